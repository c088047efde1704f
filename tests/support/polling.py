"""Waiting for an outcome in tests, the one way: poll a condition until a deadline.

The deadline only bounds a hang; it asserts nothing about speed, so it is generous.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    condition: Callable[[], object],
    timeout: float = 30.0,
    what: str = "the condition",
    interval: float = 0.02,
) -> None:
    """Return as soon as ``condition()`` is truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
