"""Run ``agentwatch serve`` as a child process, the way a user runs it, on free loopback ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CollectorProcess:
    def __init__(self, config: dict[str, Any], workdir: Path, env: dict[str, str] | None = None):
        self.config = config
        self.workdir = workdir
        self.config_path = workdir / "agentwatch.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "agentwatch.log"

    @property
    def http_port(self) -> int:
        ep = self.config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
        return int(ep.rsplit(":", 1)[1])

    @property
    def grpc_port(self) -> int:
        ep = self.config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
        return int(ep.rsplit(":", 1)[1])

    def start(self, timeout: float = 60.0, *, wait_for: str = "/ready") -> CollectorProcess:
        """Spawn ``agentwatch serve`` and wait until ``wait_for`` answers 200: ``/ready`` needs
        every exporter reachable, ``/health`` only a live process (an exporter may be down)."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "collector", "serve", "-c", str(self.config_path)],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.wait_ready(timeout, wait_for)
        return self

    def wait_ready(self, timeout: float, path: str = "/ready") -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.http_port}{path}"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"agentwatch exited {self.proc.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"agentwatch not ready after {timeout}s ({path}):\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def read_debug(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def otlp_config(workdir: Path, exporters: dict[str, Any], **pipeline_extra: Any) -> dict[str, Any]:
    """A config with the OTLP receiver on free ports feeding every signal into ``exporters``."""
    names = list(exporters)
    return {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"127.0.0.1:{free_port()}"},
                    "http": {"endpoint": f"127.0.0.1:{free_port()}"},
                }
            }
        },
        "exporters": exporters,
        "service": {
            "data_dir": str(workdir / "data"),
            "shutdown_timeout": 20,
            "logs": {"level": "info", "format": "json"},
            "pipelines": {
                sig: {"receivers": ["otlp"], "exporters": names, **pipeline_extra}
                for sig in ("logs", "metrics", "traces")
            },
        },
    }
