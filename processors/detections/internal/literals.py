"""Which of several regexes may match a text, told by one scan for the literals they require.

Rule regexes are searched in almost every tool call's command, and almost none match. Each
regex (read with the standard library's own parser) needs some literal text in any match:
``curl`` or ``wget``, ``chmod``, ``.env``. One C-level scan of the lower-cased text for all those
literals tells which regexes can still match; the rest need not run.
"""

from __future__ import annotations

import re
import re._constants as _sre_constants
import re._parser as _sre
from collections.abc import Sequence
from typing import Any

from processors.secrets import trie_regex

_REPEATS = (
    _sre_constants.MAX_REPEAT,
    _sre_constants.MIN_REPEAT,
    getattr(_sre_constants, "POSSESSIVE_REPEAT", _sre_constants.MAX_REPEAT),
)


def required_literals(regex: str) -> frozenset[str] | None:
    """Lower-case literals of which every match of ``regex`` contains at least one, or
    ``None`` when there is no such set (or the pattern is beyond this reading)."""
    try:
        return _necessary(list(_sre.parse(regex)))
    except Exception:  # re's parser is internal: any surprise means "no shortcut"
        return None


def _necessary(items: list[Any]) -> frozenset[str] | None:
    """Literals one of which a match of the sequence ``items`` contains (the most selective
    choice among the sequence's parts)."""
    candidates: list[frozenset[str]] = []
    run = ""
    for op, arg in items:
        if op is _sre_constants.LITERAL and arg < 128:
            run += chr(arg).lower()
            continue
        before, run = run, ""
        if before:
            candidates.append(frozenset([before]))
        found: frozenset[str] | None = None
        if op is _sre_constants.SUBPATTERN:
            found = _necessary(list(arg[-1]))
        elif op is _sre_constants.ATOMIC_GROUP:
            found = _necessary(list(arg))
        elif op is _sre_constants.BRANCH:
            branches = [_necessary(list(b)) for b in arg[1]]
            if all(b is not None for b in branches):
                found = frozenset(lit for b in branches if b for lit in b)
            leads = [_leading_literal(list(b)) for b in arg[1]]
            if before and all(leads):  # re's parser splits "nc|ncat" into "n" + "c|cat"
                candidates.append(frozenset(before + lead for lead in leads))
        elif op in _REPEATS and arg[0] >= 1:
            found = _necessary(list(arg[2]))
        elif op is _sre_constants.ASSERT:  # what a lookaround asserts is in the text too
            found = _necessary(list(arg[1]))
        if found:
            candidates.append(found)
    if run:
        candidates.append(frozenset([run]))
    if not candidates:
        return None
    return max(candidates, key=lambda c: (min(len(lit) for lit in c), -len(c)))


def _leading_literal(items: list[Any]) -> str:
    lead = ""
    for op, arg in items:
        if op is not _sre_constants.LITERAL or arg >= 128:
            break
        lead += chr(arg).lower()
    return lead


class LiteralScan:
    """Names the regexes (given as ``names``, one per regex) that may match a text."""

    __slots__ = ("_always", "_by_literal", "_every", "_scan")

    def __init__(self, regexes: Sequence[str], names: Sequence[str]) -> None:
        literals = [required_literals(regex) for regex in regexes]
        self._always = frozenset(n for n, lits in zip(names, literals, strict=True) if lits is None)
        """Regexes without required literals: they may always match."""
        self._every = frozenset(names)
        owners: dict[str, set[str]] = {}
        for name, lits in zip(names, literals, strict=True):
            for lit in lits or ():
                owners.setdefault(lit, set()).add(name)
        # the scan finds the longest literal at each position; one containing others stands
        # for theirs too
        self._by_literal = {
            lit: frozenset(n for other, ns in owners.items() if other in lit for n in ns)
            for lit in owners
        }
        self._scan = re.compile(f"(?=({trie_regex(list(owners))}))") if owners else None

    def candidates(self, text: str, out: set[str]) -> None:
        """Adds to ``out`` the names of the regexes that may match ``text``."""
        if not text.isascii():  # case folding beyond ASCII: no shortcut
            out.update(self._every)
            return
        out.update(self._always)
        if self._scan is not None:
            for literal in self._scan.findall(text.lower()):
                out.update(self._by_literal[literal])
