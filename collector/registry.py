"""Factories of every built-in component, keyed by kind and type name.

Each entry names the module attribute holding a ``Factory``; modules are imported on first use
so that a component with heavy dependencies costs nothing unless a config names it.
"""

from __future__ import annotations

import importlib

from collector.component import Factory

_BUILTIN: dict[str, dict[str, str]] = {
    "receiver": {
        "otlp": "collector.receivers.otlp:FACTORY",
        "sessionfiles": "collector.receivers.sessionfiles.receiver:FACTORY",
    },
    "processor": {
        "cost": "processors.cost:FACTORY",
        "cumulative_to_delta": "processors.cumulative_to_delta:FACTORY",
        "detections": "processors.detections.processor:FACTORY",
        "normalize": "processors.normalize:FACTORY",
        "redaction": "processors.redaction:FACTORY",
    },
    "exporter": {
        "clickhouse": "exporters.clickhouse:FACTORY",
        "debug": "exporters.debug:FACTORY",
        "otlp": "exporters.otlp:FACTORY",
        "otlphttp": "exporters.otlp:HTTP_FACTORY",
        "prometheus": "exporters.prometheus:FACTORY",
    },
    "extension": {
        "budgets": "extensions.budgets:FACTORY",
        "console": "extensions.console:FACTORY",
    },
}

_PLUGINS: dict[str, dict[str, str]] = {kind: {} for kind in _BUILTIN}

KINDS = {
    "receivers": "receiver",
    "processors": "processor",
    "exporters": "exporter",
    "extensions": "extension",
}


def type_names(kind: str, *, builtin_only: bool = False) -> list[str]:
    names = set(_BUILTIN[kind])
    if not builtin_only:
        names |= set(_PLUGINS[kind])
    return sorted(names)


def factory(kind: str, type_name: str) -> Factory:  # type: ignore[type-arg]
    """Return the factory of ``type_name``; ``KeyError`` if there is no such component."""
    target = _PLUGINS[kind].get(type_name) or _BUILTIN[kind][type_name]
    module_name, attr = target.split(":")
    fac = getattr(importlib.import_module(module_name), attr)
    assert isinstance(fac, Factory) and fac.type_name == type_name, target
    return fac


def register(kind: str, type_name: str, target: str) -> None:
    """Add a component type (used by tests and by third-party plugins)."""
    _PLUGINS[kind][type_name] = target
