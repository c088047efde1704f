"""A real Prometheus server for tests (Debian's ``prometheus`` package), as a pytest fixture.

One server per test session on a free loopback port, with its own config and data directory in a
temp dir; a test points it at targets with ``set_targets`` (the config is rewritten and reloaded
through ``/-/reload``) and reads results through the HTTP query API, exactly as a user's
Prometheus would. Register with ``pytest_plugins = ["tests.support.prometheus_server"]``.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

INSTALL_HINT = "install it with scripts/install-test-deps.sh (Debian package 'prometheus')"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} not found: {INSTALL_HINT}")
    return path


class PrometheusServer:
    """A running Prometheus; scrapes every second whatever ``set_targets`` names."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "prometheus.yml"
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_config({})

    def _write_config(
        self, jobs: dict[str, dict[str, Any]], rule_files: tuple[Path, ...] = ()
    ) -> None:
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "scrape_configs": [
                {
                    "job_name": job,
                    "metrics_path": spec["path"],
                    "static_configs": [{"targets": spec["targets"]}],
                }
                for job, spec in jobs.items()
            ],
        }
        if rule_files:
            config["rule_files"] = [str(f) for f in rule_files]
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config))
        tmp.replace(self.config_path)

    def start(self, timeout: float = 60.0) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=log,
            cwd=self.workdir,
        )
        log.close()
        self._wait(lambda: self._get("/-/ready") is not None, timeout, "Prometheus to become ready")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def set_targets(
        self, jobs: dict[str, str], path: str = "/metrics", rule_files: tuple[Path, ...] = ()
    ) -> None:
        """Scrape ``{job: "127.0.0.1:port"}`` from now on (replacing earlier targets), and
        evaluate the alerting rules of ``rule_files`` every second."""
        self._write_config(
            {job: {"targets": [target], "path": path} for job, target in jobs.items()},
            rule_files,
        )
        req = urllib.request.Request(self.url + "/-/reload", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200, f"reload failed: {resp.status}"

    def _get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as resp:
                return bytes(resp.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"prometheus exited with {self.proc.returncode}: {self.log_path.read_text()}"
                ) from None
            return None

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant-vector result of ``expr`` (``[{"metric": {...}, "value": [t, "v"]}]``)."""
        body = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert body is not None, "query API unreachable"
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def query_range(
        self, expr: str, start: float, end: float, step: float
    ) -> list[dict[str, Any]]:
        """The matrix result of ``expr`` over [start, end] (``[{"metric", "values"}]``), as a
        Grafana time series panel asks for it."""
        params = {"query": expr, "start": start, "end": end, "step": step}
        try:
            url = f"{self.url}/api/v1/query_range?{urllib.parse.urlencode(params)}"
            with urllib.request.urlopen(url, timeout=10) as resp:
                answer = json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 400/422: the query's own error, with its reason
            raise AssertionError(f"{expr}: {exc.read().decode()}") from None
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def label_values(self, label: str, match: str) -> list[str]:
        """``label_values(match, label)`` as a Grafana variable query asks for it."""
        path = f"/api/v1/label/{label}/values?" + urllib.parse.urlencode({"match[]": match})
        body = self._get(path)
        assert body is not None, "query API unreachable"
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        return [str(v) for v in answer["data"]]

    def scalar(self, expr: str) -> float | None:
        """The single value of ``expr``, or None while it has no result."""
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def target_health(self, job: str) -> str | None:
        body = self._get("/api/v1/targets")
        assert body is not None
        for t in json.loads(body)["data"]["activeTargets"]:
            if t["labels"].get("job") == job:
                return str(t["health"])
        return None

    def wait_for(
        self, expr: str, expected: float, timeout: float = 30.0, rel: float = 1e-9
    ) -> None:
        """Wait until ``expr`` evaluates to ``expected`` (Prometheus scrapes asynchronously)."""
        end = time.monotonic() + timeout
        while True:
            value = self.scalar(expr)
            if value is not None and abs(value - expected) <= rel * max(1.0, abs(expected)):
                return
            if time.monotonic() > end:
                raise AssertionError(f"{expr}: expected {expected}, Prometheus says {value}")
            time.sleep(0.2)

    def _wait(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log_path.read_text()}")
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.2)


@pytest.fixture(scope="session")
def prometheus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def promtool_check_metrics(exposition: bytes) -> subprocess.CompletedProcess[bytes]:
    """``promtool check metrics`` on an exposition (text format 0.0.4), as CI would run it."""
    return subprocess.run(
        [binary("promtool"), "check", "metrics"], input=exposition, capture_output=True, timeout=60
    )
