"""Loading and checking the YAML configuration, in the OpenTelemetry Collector's shape.

Every mistake is reported with the exact path of the offending key, and all mistakes are
reported at once, so ``agentwatch validate`` can be run in a loop until it is clean.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

import configs
from collector import registry
from collector.component import (
    ComponentConfig,
    ConfigContext,
    Duration,
    ExporterConfig,
    Factory,
    Signal,
)

DEFAULT_CONFIG = Path(configs.__file__).resolve().parent / "default.yaml"

_ENV_REF = re.compile(r"\$\$|\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


class ConfigError(Exception):
    """The configuration has one or more mistakes; ``errors`` lists each with its path."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


class PipelineConfig(ComponentConfig):
    receivers: list[str] = Field(min_length=1)
    processors: list[str] = Field(default_factory=list)
    exporters: list[str] = Field(min_length=1)


class LogConfig(ComponentConfig):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"


class ServiceConfig(ComponentConfig):
    pipelines: dict[str, PipelineConfig] = Field(min_length=1)
    data_dir: str = Field(
        default="./data", description="Where WALs, processor state and the embedded store live."
    )
    shutdown_timeout: Duration = Field(
        default=15.0, description="How long SIGTERM/SIGINT may spend draining queues."
    )
    logs: LogConfig = Field(default_factory=LogConfig)
    extensions: list[str] = Field(
        default_factory=list,
        description="Extensions to run (defined under `extensions:`), e.g. the console.",
    )


@dataclass
class ComponentSpec:
    """One configured component instance: its full key, its factory and its typed config."""

    name: str
    factory: Factory  # type: ignore[type-arg]
    config: ComponentConfig


@dataclass
class PipelineSpec:
    name: str
    signal: Signal
    receivers: list[str]
    processors: list[str]
    exporters: list[str]


@dataclass
class Config:
    receivers: dict[str, ComponentSpec]
    processors: dict[str, ComponentSpec]
    exporters: dict[str, ComponentSpec]
    pipelines: list[PipelineSpec]
    service: ServiceConfig
    source: str
    warnings: list[str] = field(default_factory=list)
    extensions: dict[str, ComponentSpec] = field(default_factory=dict)


def substitute_env(node: Any, path: str, errors: list[str], env: dict[str, str]) -> Any:
    """Replace ``${env:VAR}`` and ``${env:VAR:-default}`` in every string scalar.

    A scalar that is exactly one reference is re-read as YAML so ``port: ${env:PORT}`` yields an
    int; ``$$`` escapes a literal ``$``. An unset variable without a default is an error rather
    than an empty string, because a silently empty password or endpoint is worse than a refusal.
    """
    if isinstance(node, dict):
        return {
            k: substitute_env(v, f"{path}.{k}" if path else str(k), errors, env)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [substitute_env(v, f"{path}[{i}]", errors, env) for i, v in enumerate(node)]
    if not isinstance(node, str) or "$" not in node:
        return node

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        errors.append(f"{path}: environment variable {name} is not set")
        return ""

    whole = _ENV_REF.fullmatch(node)
    result = _ENV_REF.sub(repl, node)
    if whole and whole.group(0) != "$$":
        try:
            parsed = yaml.safe_load(result) if result != "" else ""
        except yaml.YAMLError:
            return result
        if isinstance(parsed, str | int | float | bool):
            return parsed
    return result


def _format_pydantic(prefix: str, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        where = f"{prefix}.{loc}" if loc else prefix
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        out.append(f"{where}: {msg}")
    return out


def _parse_components(
    raw: Any, section: str, ctx: ConfigContext, errors: list[str]
) -> dict[str, ComponentSpec]:
    kind = registry.KINDS[section]
    specs: dict[str, ComponentSpec] = {}
    if raw is None:
        return specs
    if not isinstance(raw, dict):
        errors.append(f"{section}: expected a mapping of component names to settings")
        return specs
    for key, body in raw.items():
        key = str(key)
        path = f"{section}.{key}"
        type_name, _, instance = key.partition("/")
        if not type_name or (key.count("/") and not instance):
            errors.append(f"{path}: component names are 'type' or 'type/instance'")
            continue
        try:
            fac = registry.factory(kind, type_name)
        except KeyError:
            known = ", ".join(registry.type_names(kind)) or "none"
            errors.append(f"{path}: unknown {kind} type '{type_name}' (known: {known})")
            continue
        if body is None:
            body = {}
        if not isinstance(body, dict):
            errors.append(f"{path}: expected a mapping of settings")
            continue
        try:
            config = fac.config_class.model_validate(body)
        except ValidationError as exc:
            errors.extend(_format_pydantic(path, exc))
            continue
        errors.extend(_check_tree(config, path, ctx))
        specs[key] = ComponentSpec(key, fac, config)
    return specs


def _check_tree(config: ComponentConfig, path: str, ctx: ConfigContext) -> list[str]:
    """Run ``check`` on a config and every nested config section, each with its own path."""
    errors = list(config.check(path, ctx))
    for name in type(config).model_fields:
        value = getattr(config, name)
        children: list[tuple[str, Any]] = []
        if isinstance(value, ComponentConfig):
            children = [(f"{path}.{name}", value)]
        elif isinstance(value, dict):
            children = [(f"{path}.{name}.{k}", v) for k, v in value.items()]
        elif isinstance(value, list):
            children = [(f"{path}.{name}[{i}]", v) for i, v in enumerate(value)]
        for child_path, child in children:
            if isinstance(child, ComponentConfig):
                errors.extend(_check_tree(child, child_path, ctx))
    return errors


def resolve_path(value: str, base_dir: str) -> Path:
    """Expand ``~`` and anchor a relative path at ``base_dir`` (the working directory)."""
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else Path(base_dir) / p


def load(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Config:
    """Load, substitute, type-check and cross-check a config; ``ConfigError`` lists all errors."""
    source = Path(path) if path is not None else DEFAULT_CONFIG
    env = dict(os.environ) if env is None else env
    try:
        text = source.read_text()
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read: {exc.strerror or exc}"]) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: not valid YAML: {exc}"]) from exc
    # Relative paths are relative to the working directory, as with otelcol.
    return parse(raw, source=str(source), env=env, base_dir=os.getcwd())


def parse(raw: Any, *, source: str, env: dict[str, str], base_dir: str) -> Config:
    errors: list[str] = []
    if not isinstance(raw, dict):
        raise ConfigError(
            [f"{source}: expected a mapping with receivers, processors, exporters, service"]
        )
    for key in raw:
        if key not in (
            "receivers",
            "processors",
            "exporters",
            "service",
            "extensions",
            "connectors",
        ):
            errors.append(f"{key}: unknown key")
        elif key == "connectors":
            errors.append(f"{key}: not supported by agentwatch")
    raw = substitute_env(raw, "", errors, env)

    service_raw = raw.get("service")
    service: ServiceConfig | None = None
    if not isinstance(service_raw, dict):
        errors.append(
            "service: required key is missing"
            if service_raw is None
            else "service: expected a mapping"
        )
    else:
        try:
            service = ServiceConfig.model_validate(service_raw)
        except ValidationError as exc:
            errors.extend(_format_pydantic("service", exc))
    data_dir = (
        str(resolve_path(service.data_dir, base_dir)) if service else str(Path(base_dir) / "data")
    )
    ctx = ConfigContext(base_dir=base_dir, data_dir=data_dir)

    receivers = _parse_components(raw.get("receivers"), "receivers", ctx, errors)
    processors = _parse_components(raw.get("processors"), "processors", ctx, errors)
    exporters = _parse_components(raw.get("exporters"), "exporters", ctx, errors)
    extensions = _parse_components(raw.get("extensions"), "extensions", ctx, errors)
    declared = {
        "receivers": set(
            (raw.get("receivers") or {}) if isinstance(raw.get("receivers"), dict) else ()
        ),
        "processors": set(
            (raw.get("processors") or {}) if isinstance(raw.get("processors"), dict) else ()
        ),
        "exporters": set(
            (raw.get("exporters") or {}) if isinstance(raw.get("exporters"), dict) else ()
        ),
    }

    pipelines: list[PipelineSpec] = []
    warnings: list[str] = []
    if service is not None:
        service = service.model_copy(update={"data_dir": data_dir})
        for pname, p in service.pipelines.items():
            ppath = f"service.pipelines.{pname}"
            sig_name = pname.split("/", 1)[0]
            try:
                signal = Signal(sig_name)
            except ValueError:
                errors.append(f"{ppath}: pipeline names start with logs, metrics or traces")
                continue
            for section, names in (
                ("receivers", p.receivers),
                ("processors", p.processors),
                ("exporters", p.exporters),
            ):
                seen: set[str] = set()
                for i, ref in enumerate(names):
                    if ref in seen:
                        errors.append(f"{ppath}.{section}[{i}]: '{ref}' is listed twice")
                    seen.add(ref)
                    if ref not in declared[section]:
                        errors.append(
                            f"{ppath}.{section}[{i}]: '{ref}' is not defined under {section}"
                        )
                        continue
                    specs = {
                        "receivers": receivers,
                        "processors": processors,
                        "exporters": exporters,
                    }[section]
                    spec = specs.get(ref)
                    if spec is not None and signal not in spec.factory.signals:
                        errors.append(
                            f"{ppath}.{section}[{i}]: '{ref}' does not support {signal.value}"
                        )
            pipelines.append(PipelineSpec(pname, signal, p.receivers, p.processors, p.exporters))
            types = [n.split("/", 1)[0] for n in p.processors]
            otlp_out = any(e.split("/", 1)[0] in ("otlp", "otlphttp") for e in p.exporters)
            if otlp_out and "redaction" not in types:
                warnings.append(
                    f"{ppath}: exports over OTLP without a redaction processor; prompts, "
                    "responses and secrets may leave this machine"
                )
        used = {s: set() for s in declared}  # type: dict[str, set[str]]
        for pl in pipelines:
            used["receivers"].update(pl.receivers)
            used["processors"].update(pl.processors)
            used["exporters"].update(pl.exporters)
        for section in declared:
            for name in sorted(declared[section] - used[section]):
                warnings.append(f"{section}.{name}: defined but not used in any pipeline")
        errors.extend(_check_service_extensions(service, raw.get("extensions"), warnings))
    if errors:
        raise ConfigError(errors)
    assert service is not None
    enabled = {name: extensions[name] for name in service.extensions if name in extensions}
    return Config(receivers, processors, exporters, pipelines, service, source, warnings, enabled)


def _check_service_extensions(service: ServiceConfig, raw: Any, warnings: list[str]) -> list[str]:
    """``service.extensions`` may only name defined extensions, each once; a defined but
    unlisted extension does not run, which is worth a warning (as with otelcol)."""
    declared = set(raw) if isinstance(raw, dict) else set()
    errors: list[str] = []
    seen: set[str] = set()
    for i, ref in enumerate(service.extensions):
        if ref in seen:
            errors.append(f"service.extensions[{i}]: '{ref}' is listed twice")
        seen.add(ref)
        if ref not in declared:
            errors.append(f"service.extensions[{i}]: '{ref}' is not defined under extensions")
    for name in sorted(declared - seen):
        warnings.append(f"extensions.{name}: defined but not listed in service.extensions")
    return errors


def exporter_config(spec: ComponentSpec) -> ExporterConfig:
    """Every exporter config derives from ``ExporterConfig``; this narrows the type."""
    assert isinstance(spec.config, ExporterConfig), spec.name
    return spec.config
