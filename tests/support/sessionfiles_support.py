"""Helpers for the session-file tests: a config on temp paths and sample directories."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from collector.config import Config, load

SAMPLES = Path(__file__).parents[1] / "data" / "sessionfiles"


def write_config(tmp_path: Path, clickhouse_db: Any = None) -> Path:
    """The shipped processors in the shipped order; ClickHouse only when a database is given."""
    exporters: dict[str, Any] = {}
    if clickhouse_db is not None:
        # Raw rows older than their TTL (30 days) are dropped as they arrive; the samples are
        # older, and the tests look at the raw rows too.
        exporters["clickhouse"] = {
            "endpoint": clickhouse_db.url,
            "database": clickhouse_db.name,
            "ttl_days": {"otel_logs": 0},
        }
    else:
        exporters["debug"] = {}
    cfg = tmp_path / "agentwatch.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}},
                "processors": {"normalize": {}, "cost": {}, "detections": {}, "redaction": {}},
                "exporters": exporters,
                "service": {
                    "data_dir": str(tmp_path / "data"),
                    "pipelines": {
                        "logs": {
                            "receivers": ["otlp"],
                            "processors": ["normalize", "cost", "detections", "redaction"],
                            "exporters": list(exporters),
                        }
                    },
                },
            }
        )
    )
    return cfg


def config(tmp_path: Path, clickhouse_db: Any = None) -> Config:
    return load(str(write_config(tmp_path, clickhouse_db)))


def claude_tree(tmp_path: Path, *samples: str) -> Path:
    """``projects/<project>/<session>.jsonl`` holding the named Claude samples."""
    root = tmp_path / "claude" / "projects"
    for name in samples:
        target = root / "-work-project" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLES / "claude" / name, target)
    return root


def codex_tree(tmp_path: Path, *samples: str) -> Path:
    root = tmp_path / "codex" / "sessions"
    for i, name in enumerate(samples):
        target = root / "2026" / "07" / "10" / f"rollout-2026-07-10T00-00-0{i}-{name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLES / "codex" / name, target)
    return root


def gemini_tree(tmp_path: Path, *samples: str) -> Path:
    root = tmp_path / "gemini" / "tmp"
    for name in samples:
        target = root / "project" / "chats" / f"session-{name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLES / "gemini" / name, target)
    return root
