"""configs/examples/: agentwatch as a second exporter behind otelcol-contrib, Grafana Alloy, the
Datadog Agent (first hop, DDOT) and ADOT, and a loadbalancing front for several replicas.

Each file parses (YAML, or Alloy syntax with tests/support/alloy_syntax.py), names only components
its
distribution documents (configs/examples/components/*.yaml, each with its source), wires only
components it defines, points at agentwatch's default ports (configs/default.yaml), and its
agentwatch exporter passes agentwatch's own OTLP client settings (exporters/otlp.py). The
first-hop agentwatch config is loaded by agentwatch itself.
"""

from __future__ import annotations

import copy
import re
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from collector.component import ConfigContext
from collector.config import load
from exporters.otlp import OtlpGrpcConfig, OtlpHttpConfig, grpc_target
from tests.support import alloy_syntax

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "configs" / "examples"
COMPONENTS = EXAMPLES / "components"
DEPLOY_DOC = REPO / "docs" / "deploy.md"
OTELCOL_EXAMPLES = {
    "otelcol-contrib.yaml": "otelcol-contrib",
    "loadbalancing-front.yaml": "otelcol-contrib",
    "adot-collector.yaml": "adot",
    "datadog/ddot-collector.yaml": "ddot",
}
"""Collector configs and the distribution whose component list they must keep to."""
ALLOY = "alloy/config.alloy"
FIRST_HOP = "datadog/agentwatch-first-hop.yaml"
DATADOG_AGENT = "datadog/datadog.yaml"
MDM_SCRIPT = "mdm-agentwatch-setup.sh"
"""Not a collector config: `agentwatch setup` for every user home
(tests/collector/test_setup_agents.py)."""
KINDS = {
    "receivers": "receiver",
    "processors": "processor",
    "exporters": "exporter",
    "extensions": "extension",
    "connectors": "connector",
}
CTX = ConfigContext(base_dir=str(REPO), data_dir="/tmp")


def _default(value: str) -> str:
    """``${env:VAR:-default}`` -> ``default``, as agentwatch resolves it with VAR unset."""
    m = re.fullmatch(r"\$\{env:\w+:-(.*)\}", value)
    return m.group(1) if m else value


def _port(endpoint: str) -> int:
    parsed = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"//{endpoint}")
    assert parsed.port is not None, endpoint
    return parsed.port


DEFAULTS = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
GRPC_PORT = _port(_default(DEFAULTS["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]))
HTTP_PORT = _port(_default(DEFAULTS["receivers"]["otlp"]["protocols"]["http"]["endpoint"]))


def _yaml(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return document


def _distribution(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((COMPONENTS / f"{name}.yaml").read_text())
    return document


def module_of(kind: str, component_id: str) -> str:
    """``memory_limiter`` (processors) -> ``memorylimiterprocessor``: how a config type maps to
    the Go module the distributions list (``otlp``/``otlpexporter``, ``health_check``/...)."""
    return component_id.split("/", 1)[0].replace("_", "") + KINDS[kind]


def agentwatch_exporters(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: block
        for name, block in config.get("exporters", {}).items()
        if name.split("/", 1)[-1] == "agentwatch" and name.split("/", 1)[0] in ("otlp", "otlphttp")
    }


def client_errors(component_id: str, block: dict[str, Any]) -> list[str]:
    """agentwatch's own check of OTLP client settings: its exporter config types."""
    kind = component_id.split("/", 1)[0]
    model = OtlpGrpcConfig if kind in ("otlp", "loadbalancing") else OtlpHttpConfig
    try:
        config = model.model_validate(block)
    except ValidationError as exc:
        return [f"{component_id}: {e['loc']}: {e['msg']}" for e in exc.errors()]
    return config.check(f"exporters.{component_id}", CTX)


# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["otelcol-contrib", "ddot", "adot", "alloy"])
def test_component_lists_name_their_source(name: str) -> None:
    listing = _distribution(name)
    assert listing["source"].startswith("https://github.com/")
    lists = [v for v in listing.values() if isinstance(v, list)]
    assert sum(len(v) for v in lists) >= 20
    for entries in lists:
        assert len(entries) == len(set(entries)), "duplicates"


@pytest.mark.parametrize(("name", "distribution"), OTELCOL_EXAMPLES.items())
def test_collector_example_uses_only_its_distributions_components(
    name: str, distribution: str
) -> None:
    config = _yaml(name)
    listing = _distribution(distribution)
    used = [(kind, cid) for kind in KINDS for cid in config.get(kind, {}) or {}]
    assert used
    missing = [cid for kind, cid in used if module_of(kind, cid) not in listing[kind]]
    assert missing == [], f"not in {listing['source']}"


@pytest.mark.parametrize("name", OTELCOL_EXAMPLES)
def test_collector_example_wires_only_what_it_defines(name: str) -> None:
    config = _yaml(name)
    service = config["service"]
    connectors = set(config.get("connectors") or {})
    for extension in service.get("extensions", []):
        assert extension in config["extensions"]
    fed, fed_by = set(), set()
    for pipeline_id, pipeline in service["pipelines"].items():
        assert pipeline_id.split("/")[0] in ("logs", "metrics", "traces")
        for receiver in pipeline["receivers"]:
            assert receiver in config["receivers"] or receiver in connectors, receiver
            fed_by.add(receiver)
        for processor in pipeline.get("processors", []):
            assert processor in config["processors"], processor
        for exporter in pipeline["exporters"]:
            assert exporter in config["exporters"] or exporter in connectors, exporter
            fed.add(exporter)
    assert connectors <= fed & fed_by, "a connector must be an exporter and a receiver"
    unused = set(config["exporters"]) - fed
    assert unused == set()


@pytest.mark.parametrize("name", OTELCOL_EXAMPLES)
def test_collector_example_listens_where_the_agents_send(name: str) -> None:
    protocols = _yaml(name)["receivers"]["otlp"]["protocols"]
    assert _port(protocols["grpc"]["endpoint"]) == GRPC_PORT == 4317
    assert _port(protocols["http"]["endpoint"]) == HTTP_PORT == 4318


@pytest.mark.parametrize("name", OTELCOL_EXAMPLES)
def test_agentwatch_exporter_passes_agentwatchs_otlp_client_check(name: str) -> None:
    config = _yaml(name)
    targets = agentwatch_exporters(config)
    for cid, block in config["exporters"].items():
        if cid.startswith("loadbalancing"):
            resolver = block["resolver"]
            hosts = resolver["k8s"]["ports"] if "k8s" in resolver else resolver["static"]
            assert resolver["k8s"]["service"] == "agentwatch-headless.observability"
            assert hosts == [GRPC_PORT]
            # The OTLP template of every backend, with the endpoint the resolver fills in.
            template = {**block["protocol"]["otlp"], "endpoint": f"agentwatch-0:{GRPC_PORT}"}
            targets[cid] = template
    assert targets, "no agentwatch exporter"
    for cid, block in targets.items():
        assert client_errors(cid, block) == []
        if cid.startswith("otlphttp"):
            assert block["endpoint"].startswith("http") and _port(block["endpoint"]) == HTTP_PORT
        else:
            target, _secure = grpc_target(OtlpGrpcConfig.model_validate(block))
            assert _port(target) == GRPC_PORT


def test_the_client_check_rejects_settings_agentwatch_does_not_have() -> None:
    """Guards the test above: collector-only keys and bad endpoints do fail the check."""
    block = copy.deepcopy(agentwatch_exporters(_yaml("otelcol-contrib.yaml"))["otlp/agentwatch"])
    assert client_errors("otlp/agentwatch", block) == []
    assert client_errors("otlp/agentwatch", {**block, "sending_queue": {"num_consumers": 4}})
    assert client_errors("otlp/agentwatch", {**block, "endpoint": "agentwatch"})
    assert client_errors("otlphttp/agentwatch", {**block, "endpoint": "agentwatch:4318"})


def test_alloy_example_parses_and_uses_documented_components() -> None:
    statements = alloy_syntax.parse((EXAMPLES / ALLOY).read_text())
    blocks = [s for s in statements if isinstance(s, alloy_syntax.Block)]
    documented = set(_distribution("alloy")["components"])
    assert {b.name for b in blocks} <= documented
    declared = {f"{b.name}.{b.label}" for b in blocks}
    # Every component reference names a declared component (and an export of it).
    for attribute in alloy_syntax.walk(statements):
        for ref in alloy_syntax.references(attribute.value):
            if ref.startswith("otelcol."):
                component, export = ref.rsplit(".", 1)
                assert component in declared, ref
                assert export in ("input", "handler"), ref
    (agentwatch,) = [
        b for b in blocks if (b.name, b.label) == ("otelcol.exporter.otlphttp", "agentwatch")
    ]
    (client,) = agentwatch.blocks("client")
    settings = {a.name: a.value for a in client.body if isinstance(a, alloy_syntax.Attribute)}
    (retry,) = agentwatch.blocks("retry_on_failure")
    settings["retry_on_failure"] = {
        a.name: a.value for a in retry.body if isinstance(a, alloy_syntax.Attribute)
    }
    assert client_errors("otlphttp/agentwatch", settings) == []
    assert _port(settings["endpoint"]) == HTTP_PORT
    # The receiver listens where the agents send, and feeds agentwatch every signal.
    (receiver,) = [b for b in blocks if b.name == "otelcol.receiver.otlp"]
    assert _port(receiver.blocks("grpc")[0].attribute("endpoint")) == GRPC_PORT
    assert _port(receiver.blocks("http")[0].attribute("endpoint")) == HTTP_PORT
    (output,) = receiver.blocks("output")
    for signal in ("logs", "metrics", "traces"):
        paths = alloy_syntax.references(output.attribute(signal))
        assert "otelcol.exporter.otlphttp.agentwatch.input" in paths


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('otelcol.receiver.otlp "a" {\n  grpc { endpoint = }\n}', "2:"),
        ('otelcol.exporter.otlp "a" {\n  client {\n    endpoint = "x"\n', "end of file"),
        ('x "a" {\n  y = [1, 2\n}', "3:1"),
        ('x "a" { y = "bad \\q" }', "bad escape"),
    ],
)
def test_alloy_parser_rejects_broken_syntax_with_its_position(text: str, where: str) -> None:
    with pytest.raises(alloy_syntax.AlloySyntaxError, match=where):
        alloy_syntax.parse(text)


def test_datadog_first_hop_is_a_valid_agentwatch_config(tmp_path: Path) -> None:
    config = load(EXAMPLES / FIRST_HOP, env={})
    (grpc_receiver,) = [r for r in config.receivers.values()]
    raw = _yaml(FIRST_HOP)
    for protocol, port in (("grpc", GRPC_PORT), ("http", HTTP_PORT)):
        endpoint = raw["receivers"]["otlp"]["protocols"][protocol]["endpoint"]
        assert endpoint == DEFAULTS["receivers"]["otlp"]["protocols"][protocol]["endpoint"]
        assert _port(_default(endpoint)) == port
    assert grpc_receiver is not None
    # It re-exports to the Agent's OTLP intake, on the port datadog.yaml opens.
    exporter = raw["exporters"]["otlp/datadog-agent"]
    intake = _yaml(DATADOG_AGENT)["otlp_config"]["receiver"]["protocols"]["grpc"]["endpoint"]
    assert _port(exporter["endpoint"]) == _port(intake) == 4317
    assert client_errors("otlp/datadog-agent", exporter) == []
    for pipeline in raw["service"]["pipelines"].values():
        assert "otlp/datadog-agent" in pipeline["exporters"]
        if "redaction" in DEFAULTS["service"]["pipelines"]["logs"]["processors"]:
            assert pipeline["processors"][-1] == "redaction"  # Datadog gets redacted records


def test_every_example_is_linked_from_the_deploy_doc() -> None:
    doc = DEPLOY_DOC.read_text()
    files = sorted(
        p.relative_to(EXAMPLES).as_posix()
        for p in EXAMPLES.rglob("*")
        if p.is_file() and p.parent != COMPONENTS
    )
    assert set(files) == {*OTELCOL_EXAMPLES, ALLOY, FIRST_HOP, DATADOG_AGENT, MDM_SCRIPT}
    for name in files:
        assert f"(../configs/examples/{name})" in doc, name
