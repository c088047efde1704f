from __future__ import annotations

from pathlib import Path

from collector import reference
from collector.config import load

ROOT = Path(__file__).resolve().parent.parent


def test_readme_configuration_reference_is_current() -> None:
    readme = (ROOT / "README.md").read_text()
    assert reference.splice(readme) == readme, (
        "README's configuration reference is stale: run "
        "`.venv/bin/python -m collector.reference --write README.md`"
    )


def test_default_config_is_valid() -> None:
    cfg = load(ROOT / "configs" / "default.yaml", env={})
    assert {p.name for p in cfg.pipelines} == {"logs", "metrics", "traces"}
    assert cfg.warnings == []


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme
    assert ci.strip().splitlines()[-1] == "make test"
