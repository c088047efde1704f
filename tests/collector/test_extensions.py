"""Extensions: configured under ``extensions:``, run only when listed in
``service.extensions``, started after the exporters they read and stopped before them."""

from __future__ import annotations

from pathlib import Path

import pytest

import tests.support.components  # noqa: F401  registers the probe extension
from collector.config import ConfigError, parse
from collector.service import Service
from tests.support.components import ProbeExtension


def raw_config(tmp_path: Path, extensions: dict, listed: list[str]) -> dict:  # type: ignore[type-arg]
    return {
        "receivers": {"inject": {}},
        "exporters": {"recording": {}, "recording/two": {}},
        "extensions": extensions,
        "service": {
            "data_dir": str(tmp_path),
            "extensions": listed,
            "pipelines": {
                "logs": {"receivers": ["inject"], "exporters": ["recording", "recording/two"]}
            },
        },
    }


def test_listed_extension_starts_after_exporters_and_stops_first(tmp_path: Path) -> None:
    ProbeExtension.events.clear()
    raw = raw_config(tmp_path, {"probe": {"reads": "recording"}}, ["probe"])
    cfg = parse(raw, source="t", env={}, base_dir=str(tmp_path))
    assert list(cfg.extensions) == ["probe"]
    # Two recording exporters: 'recording' alone is ambiguous, so the probe must be given a name.
    svc = Service(cfg)
    with pytest.raises(LookupError, match="exactly one recording exporter"):
        svc.start()
    assert ProbeExtension.events == []


def test_extension_finds_named_exporter_and_shuts_down_with_service(tmp_path: Path) -> None:
    ProbeExtension.events.clear()
    raw = raw_config(tmp_path, {"probe": {}}, ["probe"])
    raw["exporters"] = {"recording": {}}
    raw["service"]["pipelines"]["logs"]["exporters"] = ["recording"]
    svc = Service(parse(raw, source="t", env={}, base_dir=str(tmp_path)))
    svc.start()
    assert ProbeExtension.events == ["start probe reads recording"]
    assert svc.shutdown(timeout=5)
    assert ProbeExtension.events[-1] == "shutdown probe"


def test_unlisted_extension_is_a_warning_and_does_not_run(tmp_path: Path) -> None:
    ProbeExtension.events.clear()
    cfg = parse(raw_config(tmp_path, {"probe": {}}, []), source="t", env={}, base_dir="/")
    assert cfg.extensions == {}
    assert "extensions.probe: defined but not listed in service.extensions" in cfg.warnings


def test_extension_errors_have_exact_paths(tmp_path: Path) -> None:
    raw = raw_config(
        tmp_path, {"probe": {"colour": "red"}, "ghost_type": {}}, ["probe", "nowhere", "probe"]
    )
    with pytest.raises(ConfigError) as info:
        parse(raw, source="t", env={}, base_dir=str(tmp_path))
    errors = info.value.errors
    assert "extensions.probe.colour: unknown key" in errors
    assert any(e.startswith("extensions.ghost_type: unknown extension type") for e in errors)
    assert "service.extensions[1]: 'nowhere' is not defined under extensions" in errors
    assert "service.extensions[2]: 'probe' is listed twice" in errors
