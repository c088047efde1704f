"""Redaction: nothing private leaves agentwatch unless the config says so.

Runs on logs, metrics and traces before the exporters. Per record it

1. removes blocked keys (and, with an allow list, keys not on it), everywhere, nested too;
2. removes content-bearing values (prompts, responses, tool output, tool arguments) whose class
   is not allowed, leaving their length behind so analytics keep sizes;
3. hashes or drops e-mail addresses in identity keys;
4. scrubs secrets from every string that is kept and truncates it per value and per record.

Which keys carry content depends on the agent (each vendor's ``content_keys``, plus the
normalised and GenAI keys here); a record whose agent is unknown is treated as if it could be
any agent, so nothing slips through by being unrecognised.
See docs/privacy.md for the full table and the reasoning.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from pydantic import Field, SecretStr

from collector import agent_model as am
from collector import telemetry
from collector.component import (
    ComponentConfig,
    ConfigContext,
    Factory,
    LogsData,
    MetricsData,
    Processor,
    TracesData,
)
from processors.secrets import (
    PatternFileError,
    SecretScrubber,
    cut_point,
    load_patterns,
    scrub_and_cut,
    with_marker,
)
from processors.vendors import (
    ALL_CONTENT,
    PLACEHOLDERS,
    ContentClass,
    ContentKey,
    all_vendors,
    vendor_for,
)

if TYPE_CHECKING:
    from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

    _KVs: TypeAlias = RepeatedCompositeFieldContainer[KeyValue]

REDACTIONS = telemetry.counter(
    "agentwatch_redactions",
    "Values removed, hashed, scrubbed or truncated by a redaction processor, by kind and agent.",
    ("processor", "kind", "agent"),
)

TRUNCATED = am.P + "truncated"
"""Set to true on a record (or resource) when any of its values was truncated."""
UNKNOWN_AGENT = "unknown"
BODY = "@body"
"""Pseudo-key of a log record's body in the content tables."""

_P, _R, _O, _A = (
    ContentClass.PROMPTS,
    ContentClass.RESPONSES,
    ContentClass.TOOL_OUTPUT,
    ContentClass.TOOL_ARGUMENTS,
)
_ck = ContentKey.of

COMMON_CONTENT_KEYS = (
    # the normalised keys (collector/agent_model.py)
    _ck(am.PROMPT_TEXT, _P, length_key=am.PROMPT_LENGTH),
    _ck(am.TOOL_ARGUMENTS, _A, length_key=am.TOOL_ARGUMENTS_SIZE, size_in_bytes=True),
    _ck(am.TOOL_OUTPUT, _O, length_key=am.TOOL_OUTPUT_SIZE, size_in_bytes=True),
    _ck(am.COMMAND, _A),
    # GenAI semantic conventions, current and deprecated
    _ck("gen_ai.input.messages", *ALL_CONTENT),
    _ck("gen_ai.output.messages", _R, _A),
    _ck("gen_ai.system_instructions", _P),
    _ck("gen_ai.tool.call.arguments", _A),
    _ck("gen_ai.tool.call.result", _O),
    _ck("gen_ai.prompt", *ALL_CONTENT),
    _ck("gen_ai.completion", _R, _A),
    _ck(BODY, _P, events=("gen_ai.user.message", "gen_ai.system.message")),
    _ck(BODY, _R, _A, events=("gen_ai.assistant.message", "gen_ai.choice")),
    _ck(BODY, _O, events=("gen_ai.tool.message",)),
    # process resource attributes: a CLI's command line holds its prompt (gemini -p "...")
    _ck("process.command_args", _P),
    _ck("process.command_line", _P),
)
"""Keys that carry content whatever the agent; each vendor adds its own ``content_keys``."""

_AGENTS = frozenset(vendor.agent.value for vendor in all_vendors())
EMAIL_KEYS = ("user.email", am.USER_EMAIL)
DEFAULT_IDENTITY_KEYS = (
    "user.id",
    "user.name",
    "user.account_id",
    "user.account_uuid",
    "enduser.id",
    "installation.id",
    am.USER_ID,
    am.USER_ACCOUNT,
)
PROTECTED_KEYS = ("agentwatch.*", "service.name", "service.version", "event.name")
"""Keys an allow list never removes (only an explicit block does): analytics depend on them."""
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def agent_of_service(service_name: str) -> str | None:
    """The agent the normalisers know by this ``service.name`` (their table, not a copy)."""
    vendor = vendor_for(service_name)
    return vendor.agent.value if vendor is not None else None


class AllowContent(ComponentConfig):
    prompts: bool = False
    responses: bool = False
    tool_output: bool = False
    tool_arguments: bool = False


class RedactionConfig(ComponentConfig):
    allow: AllowContent = Field(
        default_factory=AllowContent,
        description="Content classes to keep (truncated and scrubbed); all off by default.",
    )
    content_keys: dict[ContentClass, list[str]] = Field(
        default_factory=dict,
        description="More keys carrying content, by class, for every agent.",
    )
    max_value_chars: int = Field(default=512, ge=0, description="Per string value; 0 = no limit.")
    max_record_chars: int = Field(
        default=4096, ge=0, description="All string values of one record together; 0 = no limit."
    )
    scrub_secrets: bool = True
    high_entropy: bool = Field(
        default=False, description="Also redact random-looking tokens (may redact some ids)."
    )
    entropy_threshold: float = Field(default=4.0, gt=0, le=8)
    extra_patterns_file: str | None = None
    emails: Literal["keep", "hash", "drop"] = "keep"
    email_hash_key: SecretStr | None = Field(
        default=None, description="HMAC key for emails: hash; set it with ${env:...}."
    )
    identity_keys: list[str] = Field(
        default_factory=lambda: list(DEFAULT_IDENTITY_KEYS),
        description="Keys whose value is hashed or dropped when it is an e-mail address "
        "(user.email and agentwatch.user_email always are).",
    )
    allow_keys: list[str] = Field(
        default_factory=list,
        description="Glob patterns; when set, other keys are removed (agentwatch.*, "
        "service.name/version and event.name are always kept).",
    )
    block_keys: list[str] = Field(
        default_factory=list, description="Glob patterns of keys removed everywhere; wins."
    )

    def check(self, path: str, ctx: ConfigContext) -> list[str]:
        errors: list[str] = []
        if self.extra_patterns_file:
            file = resolve_path(self.extra_patterns_file, ctx.base_dir)
            try:
                SecretScrubber.from_files([file])
            except PatternFileError as e:
                errors.append(f"{path}.extra_patterns_file: {e}")
        if self.emails == "hash":
            key = self.email_hash_key.get_secret_value() if self.email_hash_key else ""
            if not key:
                errors.append(f"{path}.email_hash_key: required when emails is hash")
            elif len(key) < 16:
                errors.append(f"{path}.email_hash_key: use at least 16 characters")
        return errors


def resolve_path(path: str, base_dir: str) -> str:
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else Path(base_dir) / p)


# What to do with a key (memoised per agent): small ints keep the hot loop cheap.
KEEP, BLOCK, NOT_ALLOWED, CONTENT, EMAIL, MAYBE_EMAIL, BY_EVENT = range(7)
_Action = tuple[int, "ContentKey | None"]
SHORT_VALUE = 64
"""Strings up to this length (ids, names, models) are never cut by the record budget."""
_MEMO_MAX_LENGTH = 160
_MEMO_LIMIT = 16_384
_NESTED_OR_BYTES = frozenset({"kvlist_value", "array_value", "bytes_value"})
"""AnyValue kinds ``_process_value`` has work for besides strings."""
_ACTION_LIMIT = 50_000


_Counts = dict[tuple[str, str], int]
"""(kind, agent) -> redactions, per batch (each call has its own: receivers are threads)."""


@dataclass
class _Record:
    """What one record (log, span, data point, resource, scope) accumulates while processed."""

    agent: str
    counts: _Counts
    event: str = ""
    strings: list[tuple[AnyValue, str, int]] = field(default_factory=list)
    """(value, kept text without marker, characters already removed)"""
    total_chars: int = 0
    truncated: bool = False


class RedactionProcessor(Processor):
    def __init__(self, name: str, config: RedactionConfig) -> None:
        super().__init__(name, config)
        self.cfg = config
        extra = [config.extra_patterns_file] if config.extra_patterns_file else []
        self.scrubber: SecretScrubber | None = (
            SecretScrubber.from_files(
                extra, high_entropy=config.high_entropy, entropy_threshold=config.entropy_threshold
            )
            if config.scrub_secrets
            else None
        )
        allowed = {c for c in ContentClass if getattr(config.allow, c.value)}
        self._not_allowed_order = [c for c in ContentClass if c not in allowed]
        self._allowed = frozenset(allowed)
        self._block = _glob(config.block_keys)
        self._allow = _glob(config.allow_keys) if config.allow_keys else None
        self._protected = _KeyMatcher(_glob_regex(list(PROTECTED_KEYS)))
        self._email_keys = frozenset(EMAIL_KEYS)
        self._identity_keys = frozenset(config.identity_keys) | self._email_keys
        key = config.email_hash_key.get_secret_value() if config.email_hash_key else ""
        self._hash_key = key.encode()
        self._tables = self._build_tables(config)
        self._actions: dict[str, dict[str, _Action]] = {agent: {} for agent in self._tables}
        self._event_actions: dict[tuple[str, str, str], _Action] = {}
        self._memo: dict[str, tuple[str, tuple[str, ...], int]] = {}
        self._email_cache: dict[str, str] = {}

    # --- configuration tables ------------------------------------------------------------------

    @staticmethod
    def _build_tables(config: RedactionConfig) -> dict[str, dict[str, list[ContentKey]]]:
        extra = tuple(
            _ck(key, ContentClass(cls)) for cls, keys in config.content_keys.items() for key in keys
        )
        tables: dict[str, dict[str, list[ContentKey]]] = {}
        everything: list[ContentKey] = []
        for vendor in all_vendors():
            keys = vendor.content_keys
            table: dict[str, list[ContentKey]] = {}
            for ck in (*COMMON_CONTENT_KEYS, *extra, *keys):
                table.setdefault(ck.key, []).append(ck)
            tables[vendor.agent.value] = table
            everything.extend(keys)
        unknown: dict[str, list[ContentKey]] = {}
        for ck in (*COMMON_CONTENT_KEYS, *extra, *everything):
            unknown.setdefault(ck.key, []).append(ck)
        tables[UNKNOWN_AGENT] = unknown
        return tables

    def _resolve(self, agent: str, key: str) -> _Action:
        """What to do with ``key`` for ``agent`` whatever the event; memoised."""
        result: _Action
        if self._block is not None and self._block(key):
            result = (BLOCK, None)
        elif self._allow is not None and not self._allow(key) and not self._protected(key):
            result = (NOT_ALLOWED, None)
        else:
            entries = self._tables[agent].get(key)
            if entries is not None and any(e.events for e in entries):
                result = (BY_EVENT, None)
            elif entries is not None:
                result = self._content_action(entries[0])
            else:
                result = self._identity_action(key)
        actions = self._actions[agent]
        if len(actions) > _ACTION_LIMIT:  # keys come from clients: keep the memo bounded
            actions.clear()
        actions[key] = result
        return result

    def _resolve_for_event(self, agent: str, event: str, key: str) -> _Action:
        cached = self._event_actions.get((agent, event, key))
        if cached is not None:
            return cached
        entries = self._tables[agent].get(key, [])
        chosen = next((e for e in entries if event in e.events), None)
        if chosen is None:
            chosen = next((e for e in entries if not e.events), None)
        result = self._content_action(chosen) if chosen else self._identity_action(key)
        if len(self._event_actions) > _ACTION_LIMIT:
            self._event_actions.clear()
        self._event_actions[(agent, event, key)] = result
        return result

    def _identity_action(self, key: str) -> _Action:
        if key in self._email_keys:
            return (EMAIL, None)
        if key in self._identity_keys:
            return (MAYBE_EMAIL, None)
        return (KEEP, None)

    def _content_action(self, ck: ContentKey) -> _Action:
        if ck.classes <= self._allowed:
            return (KEEP, None)
        return (CONTENT, ck)

    # --- signals ---------------------------------------------------------------------------------

    def consume_logs(self, data: LogsData) -> LogsData | None:
        counts: _Counts = {}
        for rl in data.resource_logs:
            agent = self._process_resource(rl.resource.attributes, counts)
            for sl in rl.scope_logs:
                self._process_scope(sl.scope.attributes, agent, counts)
                for lr in sl.log_records:
                    rec = _Record(self._record_agent(agent, lr.attributes), counts, lr.event_name)
                    if not rec.event:
                        rec.event = _string_attr(lr.attributes, "event.name")
                    self._process_kvs(lr.attributes, rec)
                    if lr.HasField("body"):
                        self._process_body(lr, rec)
                    self._finish(rec, lr.attributes)
        self._flush_counts(counts)
        return data

    def consume_traces(self, data: TracesData) -> TracesData | None:
        counts: _Counts = {}
        for rs in data.resource_spans:
            agent = self._process_resource(rs.resource.attributes, counts)
            for ss in rs.scope_spans:
                self._process_scope(ss.scope.attributes, agent, counts)
                for span in ss.spans:
                    rec = _Record(self._record_agent(agent, span.attributes), counts)
                    self._process_kvs(span.attributes, rec)
                    for ev in span.events:
                        rec.event = ev.name
                        self._process_kvs(ev.attributes, rec)
                    rec.event = ""
                    for link in span.links:
                        self._process_kvs(link.attributes, rec)
                    if span.status.message:
                        span.status.message = self._scrub_plain(span.status.message, rec)
                    self._finish(rec, span.attributes)
        self._flush_counts(counts)
        return data

    def consume_metrics(self, data: MetricsData) -> MetricsData | None:
        counts: _Counts = {}
        for rm in data.resource_metrics:
            agent = self._process_resource(rm.resource.attributes, counts)
            for sm in rm.scope_metrics:
                self._process_scope(sm.scope.attributes, agent, counts)
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is None:
                        continue
                    for point in getattr(metric, kind).data_points:
                        rec = _Record(self._record_agent(agent, point.attributes), counts)
                        self._process_kvs(point.attributes, rec)
                        for exemplar in point.exemplars:
                            self._process_kvs(exemplar.filtered_attributes, rec)
                        self._finish(rec, point.attributes)
        self._flush_counts(counts)
        return data

    # --- records ---------------------------------------------------------------------------------

    def _process_resource(self, attrs: _KVs, counts: _Counts) -> str | None:
        service = _string_attr(attrs, "service.name")
        agent = agent_of_service(service) if service else None
        rec = _Record(agent or UNKNOWN_AGENT, counts)
        self._process_kvs(attrs, rec)
        self._finish(rec, attrs)
        return agent

    def _process_scope(self, attrs: _KVs, agent: str | None, counts: _Counts) -> None:
        if attrs:
            rec = _Record(agent or UNKNOWN_AGENT, counts)
            self._process_kvs(attrs, rec)
            self._finish(rec, attrs)

    @staticmethod
    def _record_agent(resource_agent: str | None, attrs: _KVs) -> str:
        """The normaliser's ``agentwatch.agent`` (it honours normalize's ``service_names``),
        else the resource's; when the two disagree, every agent's keys (never fewer)."""
        agent = _string_attr(attrs, am.AGENT)
        if not agent:
            return resource_agent or UNKNOWN_AGENT
        if agent not in _AGENTS or (resource_agent is not None and agent != resource_agent):
            return UNKNOWN_AGENT
        return agent

    def _process_kvs(self, kvs: _KVs, rec: _Record) -> None:
        actions = self._actions[rec.agent]
        memo = self._memo
        removed: list[int] = []
        lengths: list[tuple[str, int]] = []
        for i, kv in enumerate(kvs):
            act, ck = actions.get(kv.key) or self._resolve(rec.agent, kv.key)
            if act == BY_EVENT:
                act, ck = self._resolve_for_event(rec.agent, rec.event, kv.key)
            if act == KEEP:
                value = kv.value
                text = value.string_value
                done = memo.get(text) if text else None
                if done is not None and not done[1] and not done[2]:
                    # The common case, inlined: a short string already seen clean and whole
                    # (what _keep_string does for it, minus two calls per attribute).
                    kept = done[0]
                    kept_chars = len(kept)
                    rec.total_chars += kept_chars
                    if kept_chars > SHORT_VALUE:
                        rec.strings.append((value, kept, 0))
                    continue
                which = value.WhichOneof("value")
                if which == "string_value":
                    self._keep_string(value, rec)
                elif which in _NESTED_OR_BYTES:  # numbers and booleans have nothing to scrub
                    self._process_value(value, rec)
            elif act == CONTENT:
                assert ck is not None
                removed.append(i)
                _count(rec, self._first_not_allowed(ck))
                size = _size(kv.value, ck.size_in_bytes)
                if size is not None:
                    lengths.append((ck.length_key or f"{kv.key}.length", size))
            elif act == BLOCK:
                removed.append(i)
                _count(rec, "blocked_key")
            elif act == NOT_ALLOWED:
                removed.append(i)
                _count(rec, "not_allowed_key")
            elif not self._identity(kv, act == EMAIL, rec):
                removed.append(i)
        for i in reversed(removed):
            del kvs[i]
        if lengths:
            present = {kv.key for kv in kvs}
            for key, size in lengths:
                act = (actions.get(key) or self._resolve(rec.agent, key))[0]
                if key not in present and act == KEEP:
                    kvs.add(key=key).value.int_value = size
                    present.add(key)

    def _first_not_allowed(self, ck: ContentKey) -> str:
        return next(c.value for c in self._not_allowed_order if c in ck.classes)

    def _identity(self, kv: KeyValue, always_email: bool, rec: _Record) -> bool:
        """Hash or drop an e-mail in an identity key; returns False when it must be removed."""
        value = kv.value
        if value.WhichOneof("value") != "string_value" or self.cfg.emails == "keep":
            self._process_value(value, rec)
            return True
        text = value.string_value
        if not text or not (always_email or _EMAIL.fullmatch(text.strip())):
            self._process_value(value, rec)
            return True
        if self.cfg.emails == "drop":
            _count(rec, "email_dropped")
            return False
        value.string_value = self.hash_email(text)
        _count(rec, "email_hashed")
        return True

    def hash_email(self, email: str) -> str:
        """Keyed, so a dictionary of known addresses cannot reverse it; stable across restarts."""
        cached = self._email_cache.get(email)
        if cached is None:
            normal = email.strip().lower().encode()
            digest = hmac.new(self._hash_key, normal, hashlib.sha256).hexdigest()
            cached = f"hmac:{digest[:32]}"
            if len(self._email_cache) > 10_000:
                self._email_cache.clear()
            self._email_cache[email] = cached
        return cached

    def _process_value(self, value: AnyValue, rec: _Record) -> None:
        which = value.WhichOneof("value")
        if which == "string_value":
            self._keep_string(value, rec)
        elif which == "kvlist_value":
            self._process_kvs(value.kvlist_value.values, rec)
        elif which == "array_value":
            for item in value.array_value.values:
                self._process_value(item, rec)
        elif which == "bytes_value" and self.scrubber is not None:
            self._process_bytes(value, rec)

    def _keep_string(self, value: AnyValue, rec: _Record) -> None:
        """Scrub and cut one kept string; short strings are memoised (they repeat a lot)."""
        text = value.string_value
        done = self._memo.get(text)
        if done is None:
            done = self._scrub_cut(text)
            if len(text) <= _MEMO_MAX_LENGTH:
                if len(self._memo) >= _MEMO_LIMIT:
                    self._memo.clear()
                self._memo[text] = done
        kept, kinds, removed = done
        if kinds:
            for kind in kinds:
                _count(rec, kind)
            if not removed:
                value.string_value = kept
        if removed:
            value.string_value = with_marker(kept, removed)
            rec.truncated = True
            _count(rec, "truncated")
        rec.total_chars += len(kept)
        if len(kept) > SHORT_VALUE:
            rec.strings.append((value, kept, removed))

    def _scrub_cut(self, text: str) -> tuple[str, tuple[str, ...], int]:
        limit = self.cfg.max_value_chars
        if self.scrubber is not None:
            return scrub_and_cut(self.scrubber, text, limit)
        if 0 < limit < len(text):
            return text[:limit], (), len(text) - limit
        return text, (), 0

    def _process_bytes(self, value: AnyValue, rec: _Record) -> None:
        """Scrub a bytes value as text. Bytes that are not UTF-8 (binary output, Latin-1, a
        token next to a stray byte) become lone surrogates that no pattern matches and that
        round-trip exactly, so the ASCII secrets around them are still found."""
        assert self.scrubber is not None
        text = value.bytes_value.decode("utf-8", "surrogateescape")
        scrubbed, kinds = self.scrubber.scrub(text)
        if kinds:
            value.bytes_value = scrubbed.encode("utf-8", "surrogateescape")
            for kind in kinds:
                _count(rec, kind)

    def _scrub_plain(self, text: str, rec: _Record) -> str:
        """A string outside any attribute (span status): scrubbed and cut, not budgeted."""
        kept, kinds, removed = self._scrub_cut(text)
        for kind in kinds:
            _count(rec, kind)
        return with_marker(kept, removed) if removed else kept

    def _process_body(self, lr: LogRecord, rec: _Record) -> None:
        body = lr.body
        act, ck = self._resolve_for_event(rec.agent, rec.event, BODY)
        if act == CONTENT:
            assert ck is not None
            _count(rec, self._first_not_allowed(ck))
            size = _size(body, ck.size_in_bytes)
            lr.ClearField("body")
            if size is not None and all(kv.key != "body.length" for kv in lr.attributes):
                lr.attributes.add(key="body.length").value.int_value = size
        else:
            self._process_value(body, rec)

    def _finish(self, rec: _Record, attrs: _KVs) -> None:
        """Apply the per-record budget, then mark the record if anything was cut."""
        budget = self.cfg.max_record_chars
        if budget > 0 and rec.total_chars > budget:
            long_total = sum(len(kept) for _, kept, _ in rec.strings)
            room = max(budget - (rec.total_chars - long_total), 0)
            cap = _water_level([len(kept) for _, kept, _ in rec.strings], room)
            for value, kept, removed in rec.strings:
                if len(kept) > cap:
                    cut = cut_point(kept, cap)
                    value.string_value = with_marker(kept[:cut], removed + len(kept) - cut)
            rec.truncated = True
            _count(rec, "truncated_record")
        if rec.truncated and all(kv.key != TRUNCATED for kv in attrs):
            attrs.add(key=TRUNCATED).value.bool_value = True

    # --- counters --------------------------------------------------------------------------------

    def _flush_counts(self, counts: _Counts) -> None:
        """One counter update per kind and agent per batch, not per value."""
        for (kind, agent), n in counts.items():
            REDACTIONS.labels(self.name, kind, agent).inc(n)


def _count(rec: _Record, kind: str) -> None:
    key = (kind, rec.agent)
    rec.counts[key] = rec.counts.get(key, 0) + 1


def _string_attr(attrs: Iterable[KeyValue], key: str) -> str:
    for kv in attrs:
        if kv.key == key:
            return kv.value.string_value
    return ""


def _size(value: AnyValue, in_bytes: bool) -> int | None:
    """Length of a removed value: characters (or UTF-8 bytes), bytes, or number of items."""
    which = value.WhichOneof("value")
    if which == "string_value":
        text = value.string_value
        if text in PLACEHOLDERS:
            return None
        return len(text.encode("utf-8")) if in_bytes else len(text)
    if which == "bytes_value":
        return len(value.bytes_value)
    if which == "array_value":
        return len(value.array_value.values)
    if which == "kvlist_value":
        return len(value.kvlist_value.values)
    return None


def _water_level(lengths: list[int], budget: int) -> int:
    """Largest cap such that sum(min(length, cap)) <= budget: long values give way first."""
    remaining = budget
    ordered = sorted(lengths)
    for i, length in enumerate(ordered):
        share = remaining // (len(ordered) - i)
        if length > share:
            return share
        remaining -= length
    return ordered[-1] if ordered else budget


def _glob_regex(patterns: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(fnmatch.translate(p) for p in patterns))


def _glob(patterns: list[str]) -> _KeyMatcher | None:
    return _KeyMatcher(_glob_regex(patterns)) if patterns else None


class _KeyMatcher:
    def __init__(self, regex: re.Pattern[str]) -> None:
        self.regex = regex

    def __call__(self, key: str) -> bool:
        return self.regex.match(key) is not None


def _create(name: str, cfg: RedactionConfig) -> RedactionProcessor:
    if cfg.extra_patterns_file:
        load_patterns(cfg.extra_patterns_file)  # fail at start with the file named
    return RedactionProcessor(name, cfg)


FACTORY = Factory(
    type_name="redaction",
    kind="processor",
    config_class=RedactionConfig,
    create=_create,
)
