"""Secret scrubbing: replaces credentials in free text with ``[REDACTED:<kind>]``.

Shared by the redaction processor (every kept value) and the detections processor (evidence).
Patterns are data (``secret_patterns.yaml`` plus optional user files, validated by
``PatternFileSpec``). They are compiled once; each value is first searched for the patterns' literal
anchors in one C-level pass, and only the patterns whose anchors occur run, each in its own pass
(one big alternation would defeat the regex engine's literal-prefix scan). Most telemetry values
contain no anchor at all and cost a single regex search.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

DEFAULT_PATTERNS_FILE = Path(__file__).with_name("secret_patterns.yaml")
REDACTED_PREFIX = "[REDACTED:"
HIGH_ENTROPY_KIND = "high_entropy"
_NO_KINDS: tuple[str, ...] = ()
_SMALL_VALUE = 1024
"""Values up to this length are memoised: ids, model names and paths repeat on every record,
and a record often carries the same tool arguments under several keys."""
_CACHE_LIMIT = 4096


def redacted(kind: str) -> str:
    return f"{REDACTED_PREFIX}{kind}]"


class PatternFileError(ValueError):
    """A pattern file that cannot be used; the message names the file and the pattern."""


@dataclass(frozen=True)
class SecretPattern:
    kind: str
    regex: str
    ignore_case: bool = False
    anchors: tuple[str, ...] = ()
    description: str = ""
    min_entropy: float | None = None

    @property
    def has_secret_group(self) -> bool:
        return "(?P<secret>" in self.regex


_NUMBERED_BACKREF = re.compile(r"(?<!\\)\\[1-9]")


class PatternSpec(BaseModel):
    """One entry of a pattern file, as written; ``load_patterns`` turns it into a SecretPattern."""

    model_config = ConfigDict(extra="forbid", strict=True)

    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    regex: str = Field(min_length=1)
    ignore_case: bool = False
    anchors: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    min_entropy: float | None = Field(default=None, gt=0, le=8)
    description: str = ""

    @field_validator("regex")
    @classmethod
    def _compiles(cls, regex: str) -> str:
        if _NUMBERED_BACKREF.search(regex):
            raise ValueError("use named groups, not numbered back-references")
        try:
            compiled = re.compile(regex)
        except re.error as e:
            raise ValueError(f"invalid regex: {e}") from e
        if compiled.search(""):
            raise ValueError("regex matches the empty string")
        return regex

    def to_pattern(self) -> SecretPattern:
        return SecretPattern(
            kind=self.kind,
            regex=self.regex,
            ignore_case=self.ignore_case,
            anchors=tuple(a.lower() for a in self.anchors),
            description=self.description,
            min_entropy=self.min_entropy,
        )


class PatternFileSpec(BaseModel):
    """A pattern file: a ``patterns`` list (other top-level keys are left to the author)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    patterns: list[PatternSpec]


def load_patterns(path: str | Path) -> list[SecretPattern]:
    """Read and validate a pattern file; errors name the file, the pattern and the exact path
    of the bad field."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise PatternFileError(f"{path}: cannot read: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise PatternFileError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("patterns"), list):
        raise PatternFileError(f"{path}: expected a mapping with a 'patterns' list")
    try:
        spec = PatternFileSpec.model_validate(doc)
    except ValidationError as e:
        problems = [_problem(error, doc["patterns"]) for error in e.errors()]
        raise PatternFileError(f"{path}: " + "; ".join(problems)) from None
    return [pattern.to_pattern() for pattern in spec.patterns]


def _problem(error: ErrorDetails, patterns: list[object]) -> str:
    """One validation error in the words a pattern-file author needs, with where it is."""
    loc = error["loc"]
    index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else 0
    raw = patterns[index]
    where = f"pattern {index + 1}"
    if isinstance(raw, dict) and isinstance(raw.get("kind"), str):
        where += f" (kind {raw['kind']!r})"
    at = f"patterns[{index}]" + "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[2:]
    )
    field = loc[2] if len(loc) > 2 else None
    if field is None:
        problem = "expected a mapping"
    elif error["type"] == "extra_forbidden":
        problem = f"unknown field {field!r}"
    elif error["type"] == "value_error":  # ours: the message already says what is wrong
        problem = str(error["msg"]).removeprefix("Value error, ")
    else:
        problem = f"{field!r}: {error['msg']}"
    return f"{where}: {problem} (at {at})"


@lru_cache(maxsize=1)
def default_patterns() -> tuple[SecretPattern, ...]:
    return tuple(load_patterns(DEFAULT_PATTERNS_FILE))


def shannon_entropy(text: str) -> float:
    """Bits per character."""
    n = len(text)
    if n == 0:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


_ENTROPY_CANDIDATE = re.compile(
    r"(?<![A-Za-z0-9+_\-])[A-Za-z0-9+_\-]{20,}={0,2}(?![A-Za-z0-9+_\-])"
)


class SecretScrubber:
    """Replaces every secret the patterns find; thread-safe after construction."""

    def __init__(
        self,
        patterns: Sequence[SecretPattern] | None = None,
        *,
        high_entropy: bool = False,
        entropy_threshold: float = 4.0,
        entropy_min_length: int = 24,
    ) -> None:
        self.patterns: tuple[SecretPattern, ...] = tuple(
            default_patterns() if patterns is None else patterns
        )
        self.high_entropy = high_entropy
        self.entropy_threshold = entropy_threshold
        self.entropy_min_length = max(entropy_min_length, 20)
        self._compiled = [
            re.compile(p.regex, re.IGNORECASE if p.ignore_case else 0) for p in self.patterns
        ]
        self._kinds = [p.kind for p in self.patterns]
        self._has_secret = [p.has_secret_group for p in self.patterns]
        self._min_entropy = [p.min_entropy for p in self.patterns]
        self._always = tuple(i for i, p in enumerate(self.patterns) if not p.anchors)
        anchor_to_patterns: dict[str, set[int]] = {}
        for i, p in enumerate(self.patterns):
            for a in p.anchors:
                anchor_to_patterns.setdefault(a, set()).add(i)
        # The scan below finds the longest anchor at each position; an anchor that contains
        # others (``passw`` contains ``pass``) also triggers their patterns.
        self._anchor_patterns = {
            a: tuple(sorted(set().union(*(ix for b, ix in anchor_to_patterns.items() if b in a))))
            for a in anchor_to_patterns
        }
        self._anchor_re = (
            re.compile(f"(?=({trie_regex(list(anchor_to_patterns))}))")
            if anchor_to_patterns
            else None
        )
        self._token_ix = tuple(i for i, p in enumerate(self.patterns) if not p.has_secret_group)
        self._cache: dict[str, tuple[str, tuple[str, ...]]] = {}

    @classmethod
    def from_files(
        cls,
        extra_files: Iterable[str | Path] = (),
        *,
        include_defaults: bool = True,
        high_entropy: bool = False,
        entropy_threshold: float = 4.0,
    ) -> SecretScrubber:
        patterns = list(default_patterns()) if include_defaults else []
        for f in extra_files:
            patterns.extend(load_patterns(f))
        return cls(patterns, high_entropy=high_entropy, entropy_threshold=entropy_threshold)

    def scrub(self, text: str) -> tuple[str, tuple[str, ...]]:
        """Return the scrubbed text and the kinds replaced (one entry per replacement)."""
        if not text:
            return text, _NO_KINDS
        small = len(text) <= _SMALL_VALUE
        if small:
            hit = self._cache.get(text)
            if hit is not None:
                return hit
        result = self._scrub(text)
        if small:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[text] = result
        return result

    def scrub_text(self, text: str) -> str:
        return self.scrub(text)[0]

    def _active(self, text: str) -> tuple[int, ...]:
        """Patterns whose anchors occur in ``text`` (plus those without anchors), in order."""
        if self._anchor_re is None:
            return self._always
        low = text.lower()
        # a lookahead at every position: anchors overlapping each other are all seen
        found = set(self._anchor_re.findall(low))
        if not found:
            return self._always
        active = set(self._always)
        for anchor in found:
            active.update(self._anchor_patterns[anchor])
        return tuple(sorted(active))

    def _scrub(self, text: str) -> tuple[str, tuple[str, ...]]:
        """Each active pattern in file order, one C-level pass each (faster than one big
        alternation, which defeats the regex engine's prefix scan). Specific token formats run
        first; the contextual patterns after them skip what is already ``[REDACTED:``."""
        kinds: list[str] = []
        for i in self._active(text):
            kind = self._kinds[i]
            threshold = self._min_entropy[i]
            has_secret = self._has_secret[i]

            def replace(
                m: re.Match[str],
                kind: str = kind,
                threshold: float | None = threshold,
                has_secret: bool = has_secret,
            ) -> str:
                if threshold is not None:
                    secret = m.group("secret") if has_secret else m.group(0)
                    if shannon_entropy(secret) < threshold:
                        return m.group(0)  # too regular to be a credential: leave it
                if not has_secret:
                    kinds.append(kind)
                    return redacted(kind)
                start, end = m.span("secret")
                specific = self._refine(m.group("secret")) or kind
                kinds.append(specific)
                whole, base = m.group(0), m.start()
                return whole[: start - base] + redacted(specific) + whole[end - base :]

            text = self._compiled[i].sub(replace, text)
        if self.high_entropy:
            text = self._scrub_entropy(text, kinds)
        return text, (tuple(kinds) if kinds else _NO_KINDS)

    def _refine(self, secret: str) -> str | None:
        """The specific token kind of a secret found by a contextual pattern, if it has one."""
        for i in self._token_ix:
            if self._compiled[i].match(secret):
                return self._kinds[i]
        return None

    def _scrub_entropy(self, text: str, kinds: list[str]) -> str:
        def replace(m: re.Match[str]) -> str:
            token = m.group(0)
            if len(token) < self.entropy_min_length or not self.looks_random(token):
                return token
            kinds.append(HIGH_ENTROPY_KIND)
            return redacted(HIGH_ENTROPY_KIND)

        return _ENTROPY_CANDIDATE.sub(replace, text)

    def looks_random(self, token: str) -> bool:
        """Mixed case and digits, and close to the entropy of random text of that length."""
        has_upper = has_lower = has_digit = False
        for ch in token:
            if ch.isdigit():
                has_digit = True
            elif ch.isupper():
                has_upper = True
            elif ch.islower():
                has_lower = True
        if not (has_upper and has_lower and has_digit):
            return False
        return shannon_entropy(token.rstrip("=")) >= self.entropy_threshold


def trie_regex(words: list[str]) -> str:
    """An alternation of ``words`` shaped as a trie, so the regex engine never backtracks
    through many alternatives that share a first character."""
    trie: dict[str, dict] = {}  # type: ignore[type-arg]
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict) -> str:  # type: ignore[type-arg]
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if "" in node:
            branches.append("")
        if not branches:
            return ""
        if len(branches) == 1:
            return branches[0]
        return "(?:" + "|".join(branches) + ")"

    return build(trie)


def cut_point(text: str, limit: int) -> int:
    """Where to cut ``text`` to at most ``limit`` characters without splitting a marker."""
    if len(text) <= limit:
        return len(text)
    marker = text.rfind(REDACTED_PREFIX, max(0, limit - 64), limit + len(REDACTED_PREFIX) - 1)
    if marker != -1 and text.find("]", marker) >= limit:
        return marker
    return limit


def with_marker(kept: str, removed: int) -> str:
    """The kept text followed by the truncation marker."""
    return f"{kept}…[truncated {removed} chars]"


def truncate(text: str, limit: int) -> tuple[str, int]:
    """Cut ``text`` to ``limit`` characters plus a marker; returns the text and chars removed.

    ``limit <= 0`` means no limit. A cut never splits a ``[REDACTED:...]`` marker.
    """
    if limit <= 0 or len(text) <= limit:
        return text, 0
    cut = cut_point(text, limit)
    removed = len(text) - cut
    return with_marker(text[:cut], removed), removed


def scrub_and_cut(
    scrubber: SecretScrubber, text: str, limit: int, margin: int = 1024
) -> tuple[str, tuple[str, ...], int]:
    """Scrub, then cut to ``limit``: the kept text (no marker), kinds replaced, chars removed.

    Only the part that can survive the cut is scrubbed (plus a margin, so that no secret
    straddles the cut), which bounds the cost by ``limit`` however large the value is.
    """
    if limit > 0 and len(text) > limit + margin:
        window = text[: limit + margin]
        scrubbed, kinds = scrubber.scrub(window)
        cut = cut_point(scrubbed, limit)
        return scrubbed[:cut], kinds, len(text) - len(window) + len(scrubbed) - cut
    scrubbed, kinds = scrubber.scrub(text)
    if limit <= 0 or len(scrubbed) <= limit:
        return scrubbed, kinds, 0
    cut = cut_point(scrubbed, limit)
    return scrubbed[:cut], kinds, len(scrubbed) - cut


def scrub_and_truncate(
    scrubber: SecretScrubber, text: str, limit: int
) -> tuple[str, tuple[str, ...], int]:
    """Like ``scrub_and_cut`` but with the truncation marker appended when something was cut."""
    kept, kinds, removed = scrub_and_cut(scrubber, text, limit)
    return (with_marker(kept, removed) if removed else kept), kinds, removed
