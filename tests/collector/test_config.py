from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tests.support.components  # noqa: F401  registers the inject receiver and recording exporter
from collector.config import ConfigError, load

BASE = """
receivers:
  inject:
exporters:
  recording:
  recording/two:
    sending_queue: {queue_size: 10}
service:
  data_dir: DATA
  pipelines:
    logs:
      receivers: [inject]
      exporters: [recording, recording/two]
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(textwrap.dedent(text).replace("DATA", str(tmp_path / "data")))
    return p


def errors_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text), env=env or {})
    return info.value.errors


def test_valid_config_is_typed(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, BASE), env={})
    assert [p.name for p in cfg.pipelines] == ["logs"]
    two = cfg.exporters["recording/two"].config
    assert two.sending_queue.queue_size == 10  # type: ignore[attr-defined]
    assert cfg.exporters["recording"].config.sending_queue.queue_size == 50_000  # type: ignore[attr-defined]
    assert cfg.service.data_dir == str(tmp_path / "data")


def test_unknown_key_names_exact_path(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, BASE.replace("queue_size: 10", "queue_size: 10, colour: red"))
    assert "exporters.recording/two.sending_queue.colour: unknown key" in errs


def test_wrong_type_names_exact_path(tmp_path: Path) -> None:
    errs = errors_of(tmp_path, BASE.replace("queue_size: 10", "queue_size: lots"))
    assert any(e.startswith("exporters.recording/two.sending_queue.queue_size:") for e in errs), (
        errs
    )


def test_dangling_reference_and_unknown_type(tmp_path: Path) -> None:
    text = BASE.replace("exporters: [recording, recording/two]", "exporters: [recording, nope]")
    text += "processors:\n  teleport:\n"
    errs = errors_of(tmp_path, text)
    assert "service.pipelines.logs.exporters[1]: 'nope' is not defined under exporters" in errs
    assert any(e.startswith("processors.teleport: unknown processor type 'teleport'") for e in errs)


def test_all_errors_reported_at_once(tmp_path: Path) -> None:
    text = BASE.replace("queue_size: 10", "queue_size: -1").replace("logs:\n", "lgs:\n")
    errs = errors_of(tmp_path, text)
    assert len(errs) >= 2, errs
    assert any("queue_size" in e for e in errs)
    assert "service.pipelines.lgs: pipeline names start with logs, metrics or traces" in errs


def test_env_substitution(tmp_path: Path) -> None:
    text = BASE.replace("queue_size: 10", 'queue_size: "${env:QSIZE}", queue_size_unused: 1')
    text = text.replace(", queue_size_unused: 1", "")
    text = text.replace(
        "recording:\n", 'recording:\n    sending_queue: {on_full: "${env:MODE:-drop}"}\n'
    )
    cfg = load(write(tmp_path, text), env={"QSIZE": "77"})
    assert cfg.exporters["recording/two"].config.sending_queue.queue_size == 77  # type: ignore[attr-defined]
    assert cfg.exporters["recording"].config.sending_queue.on_full == "drop"  # type: ignore[attr-defined]
    errs = errors_of(tmp_path, text)
    assert (
        "exporters.recording/two.sending_queue.queue_size: environment variable QSIZE is not set"
        in errs
    )


def test_escaped_dollar_is_literal(tmp_path: Path) -> None:
    from collector.config import substitute_env

    errs: list[str] = []
    assert substitute_env("a$${env:X}", "k", errs, {"X": "1"}) == "a${env:X}"
    assert substitute_env("pre-${env:X}-post", "k", errs, {"X": "1"}) == "pre-1-post"
    assert errs == []


def test_duration_units(tmp_path: Path) -> None:
    cfg = load(
        write(tmp_path, BASE.replace("data_dir: ", "shutdown_timeout: 1500ms\n  data_dir: ")),
        env={},
    )
    assert cfg.service.shutdown_timeout == 1.5
    errs = errors_of(tmp_path, BASE.replace("data_dir: ", "shutdown_timeout: soon\n  data_dir: "))
    assert any(e.startswith("service.shutdown_timeout:") and "invalid duration" in e for e in errs)


def test_validate_command_prints_errors_and_fails(tmp_path: Path) -> None:
    bad = write(
        tmp_path, BASE.replace("exporters: [recording, recording/two]", "exporters: [ghost]")
    )
    cmd = [
        sys.executable,
        "-c",
        "import tests.support.components, sys; from collector.cli import main; sys.exit(main())",
    ]
    proc = subprocess.run([*cmd, "validate", "-c", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert (
        "service.pipelines.logs.exporters[0]: 'ghost' is not defined under exporters" in proc.stderr
    )
    good = write(tmp_path, BASE)
    proc = subprocess.run([*cmd, "validate", "-c", str(good)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "absent.yaml")
    assert "cannot read" in info.value.errors[0]


def test_unused_component_is_a_warning(tmp_path: Path) -> None:
    cfg = load(
        write(
            tmp_path,
            BASE.replace("exporters: [recording, recording/two]", "exporters: [recording]"),
        ),
        env={},
    )
    assert "exporters.recording/two: defined but not used in any pipeline" in cfg.warnings
