"""OTLP logs and traces request bytes straight into the record model.

``decode_logs``/``decode_traces`` use the compiled decoder (``collector/wire/compiled.pyx``,
built by ``pip install``) when it is importable and the pure-Python twin
(``collector/wire/twin.py``: upb, then ``from_proto``) otherwise; both give the same model and
raise ``google.protobuf.message.DecodeError`` for invalid bytes. ``AGENTWATCH_WIRE=python`` in
the environment forces the twin (tests run both through ``IMPLEMENTATIONS``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType
from typing import NamedTuple

from collector.records import Logs, Traces
from collector.wire import twin


class Decoders(NamedTuple):
    decode_logs: Callable[[bytes], Logs]
    decode_traces: Callable[[bytes], Traces]


def _compiled() -> ModuleType | None:
    try:
        from collector.wire import compiled
    except ImportError:  # not built: no compiler or Cython at install time
        return None
    return compiled


IMPLEMENTATIONS: dict[str, Decoders] = {"python": Decoders(twin.decode_logs, twin.decode_traces)}
_module = _compiled()
if _module is not None:
    IMPLEMENTATIONS["compiled"] = Decoders(_module.decode_logs, _module.decode_traces)

ENV_VAR = "AGENTWATCH_WIRE"
IMPLEMENTATION = (
    "compiled"
    if "compiled" in IMPLEMENTATIONS and os.environ.get(ENV_VAR, "") != "python"
    else "python"
)
"""The implementation ``decode_logs``/``decode_traces`` use: "compiled" or "python"."""

decode_logs, decode_traces = IMPLEMENTATIONS[IMPLEMENTATION]

__all__ = ["IMPLEMENTATION", "IMPLEMENTATIONS", "decode_logs", "decode_traces"]
