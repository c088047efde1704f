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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import Field, SecretStr

from collector import agent_model as am
from collector import telemetry
from collector.component import (
    ComponentConfig,
    ConfigContext,
    Factory,
    MetricsData,
    Processor,
)
from collector.otlp_values import decode_attributes, encode_attributes
from collector.records import LogRecord, Logs, Traces
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
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

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
_DIGEST = re.compile(r"[0-9a-f]{32}")
"""An ``agentwatch.event_id`` as the normaliser writes it (``vendors.event_id``)."""
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


# What to do with a key (memoised per agent): an action is a (code, content key) pair, and the
# one for keys kept as they are is a single shared object, so the hot loop tests identity.
KEEP, BLOCK, NOT_ALLOWED, CONTENT, EMAIL, MAYBE_EMAIL, BY_EVENT = range(7)
_Action = tuple[int, ContentKey | None, str]
"""(code, content key, the kind a removal is counted as)"""
_KEEP: _Action = (KEEP, None, "")
SHORT_VALUE = 64
"""Strings up to this length (ids, names, models) are never cut by the record budget."""
_MEMO_MAX_LENGTH = 160
_MEMO_LIMIT = 16_384
_ACTION_LIMIT = 50_000
_FLAT_TYPES = frozenset({str, int, float, bool, type(None)})
"""Attribute value types with nothing nested to walk."""
_KEPT, _HASHED, _DROPPED = "kept", "hashed", "dropped"
_UNSEEN = "\x00unseen"

_Counts = dict[tuple[str, str], int]
"""(kind, agent) -> redactions, per batch (each call has its own: receivers are threads)."""


class _Record:
    """What one record (log, span, data point, resource, scope) accumulates while processed."""

    __slots__ = (
        "agent",
        "changed",
        "counts",
        "event",
        "scrubbed",
        "strings",
        "total_chars",
        "truncated",
        "untouched",
    )

    def __init__(self, agent: str, counts: _Counts, event: str = "") -> None:
        self.agent = agent
        self.counts = counts
        self.event = event
        self.strings: list[tuple[Any, Any, str, int]] = []
        """(container, key or index, kept text without marker, characters already removed):
        the long strings the record budget may cut."""
        self.total_chars = 0
        self.truncated = False
        self.changed = False
        """Anything removed, added or rewritten (metrics re-encode only what changed)."""
        self.untouched: list[tuple[dict[str, Any], tuple[str, ...]]] = []
        """Attribute maps whose values all stayed as they were, and their hashed keys: the
        record budget reads their long strings only when it has to cut."""
        self.scrubbed: dict[str, tuple[str, tuple[str, ...], int]] | None = None
        """Long strings scrubbed once already in this record (too long for the memo)."""


class RedactionProcessor(Processor):
    def __init__(self, name: str, config: RedactionConfig) -> None:
        super().__init__(name, config)
        self.config: RedactionConfig = config
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
        self._placeholders = {
            vendor.agent.value: frozenset(
                [vendor.redacted_placeholder] if vendor.redacted_placeholder else []
            )
            for vendor in all_vendors()
        }
        self._placeholders[UNKNOWN_AGENT] = PLACEHOLDERS
        self._actions: dict[str, dict[str, _Action]] = {agent: {} for agent in self._tables}
        self._event_actions: dict[tuple[str, str, str], _Action] = {}
        self._memo: dict[str, tuple[str, tuple[str, ...], int]] = {}
        """Short strings that needed a change: what they became."""
        self._clean: set[str] = set()
        """Short strings already scrubbed and found whole and clean (most of them)."""
        self._email_cache: dict[str, str] = {}
        self._key_globs = self._block is not None or self._allow is not None
        identity = frozenset() if config.emails == "keep" else self._identity_keys
        self._special = {
            agent: frozenset(table) | identity for agent, table in self._tables.items()
        }
        """Per agent, the keys that need more than their value scanned (no globs configured)."""

    # --- configuration tables ------------------------------------------------------------------

    @staticmethod
    def _build_tables(config: RedactionConfig) -> dict[str, dict[str, list[ContentKey]]]:
        extra = tuple(
            ContentKey.of(key, ContentClass(cls))
            for cls, keys in config.content_keys.items()
            for key in keys
        )
        tables: dict[str, dict[str, list[ContentKey]]] = {}
        everything: list[ContentKey] = []
        for vendor in all_vendors():
            table: dict[str, list[ContentKey]] = {}
            for ck in (*COMMON_CONTENT_KEYS, *extra, *vendor.content_keys):
                table.setdefault(ck.key, []).append(ck)
            tables[vendor.agent.value] = table
            everything.extend(vendor.content_keys)
        unknown: dict[str, list[ContentKey]] = {}
        for ck in (*COMMON_CONTENT_KEYS, *extra, *everything):
            unknown.setdefault(ck.key, []).append(ck)
        tables[UNKNOWN_AGENT] = unknown
        return tables

    def _resolve(self, agent: str, key: str) -> _Action:
        """What to do with ``key`` for ``agent`` whatever the event; memoised."""
        result: _Action
        if self._block is not None and self._block(key):
            result = (BLOCK, None, "")
        elif self._allow is not None and not self._allow(key) and not self._protected(key):
            result = (NOT_ALLOWED, None, "")
        else:
            entries = self._tables[agent].get(key)
            if entries is not None and any(e.events for e in entries):
                result = (BY_EVENT, None, "")
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
            return (EMAIL, None, "")
        if key in self._identity_keys:
            return (MAYBE_EMAIL, None, "")
        return _KEEP

    def _content_action(self, ck: ContentKey) -> _Action:
        if ck.classes <= self._allowed:
            return _KEEP
        return (CONTENT, ck, next(c.value for c in self._not_allowed_order if c in ck.classes))

    # --- signals ---------------------------------------------------------------------------------

    def consume_logs(self, data: Logs) -> Logs | None:
        counts: _Counts = {}
        agents: dict[int, str | None] = {}
        scopes: set[int] = set()
        budget = self.config.max_record_chars
        clean = self._clean
        for record in data.records:
            resource_agent = agents.get(id(record.resource), _UNSEEN)
            if resource_agent == _UNSEEN:
                resource_agent = self._process_resource(record.resource.attributes, counts)
                agents[id(record.resource)] = resource_agent
            if id(record.scope) not in scopes:
                scopes.add(id(record.scope))
                self._process_scope(record.scope.attributes, resource_agent, counts)
            attrs = record.attributes
            event = record.event_name
            if not event:
                name = attrs.get("event.name")
                event = name if isinstance(name, str) else ""
            agent = attrs.get(am.AGENT)
            if agent is None or agent != resource_agent:
                agent = self._record_agent(resource_agent, attrs)
            rec = _Record(agent, counts, event)
            self._process_attributes(attrs, rec)
            body = record.body
            holder = None
            if body is not None:
                if (
                    body.__class__ is str
                    and body in clean
                    and len(body) <= SHORT_VALUE
                    and self._resolve_for_event(agent, event, BODY) is _KEEP
                ):
                    rec.total_chars += len(body)  # the usual body: an event name, seen before
                else:
                    holder = self._process_body(record, rec)
            if rec.truncated or 0 < budget < rec.total_chars:
                self._finish(rec, attrs)
            if holder is not None:
                record.body = holder[0]  # after _finish: the budget may have cut it
        self._flush_counts(counts)
        return data

    def consume_traces(self, data: Traces) -> Traces | None:
        counts: _Counts = {}
        agents: dict[int, str | None] = {}
        scopes: set[int] = set()
        for span in data.spans:
            resource_agent = agents.get(id(span.resource), _UNSEEN)
            if resource_agent == _UNSEEN:
                resource_agent = self._process_resource(span.resource.attributes, counts)
                agents[id(span.resource)] = resource_agent
            if id(span.scope) not in scopes:
                scopes.add(id(span.scope))
                self._process_scope(span.scope.attributes, resource_agent, counts)
            rec = _Record(self._record_agent(resource_agent, span.attributes), counts)
            self._process_attributes(span.attributes, rec)
            for event in span.events:
                rec.event = event.name
                self._process_attributes(event.attributes, rec)
            rec.event = ""
            for link in span.links:
                self._process_attributes(link.attributes, rec)
            if span.status_message:
                span.status_message = self._scrub_plain(span.status_message, rec)
            self._finish(rec, span.attributes)
        self._flush_counts(counts)
        return data

    def consume_metrics(self, data: MetricsData) -> MetricsData | None:
        """Metrics are still protobuf: each attribute list is decoded, redacted like any other
        and written back only when something changed (a few points per series and minute)."""
        counts: _Counts = {}
        for rm in data.resource_metrics:
            resource = decode_attributes(rm.resource.attributes)
            agent = self._process_resource(resource, counts, rm.resource.attributes)
            for sm in rm.scope_metrics:
                if sm.scope.attributes:
                    scope = decode_attributes(sm.scope.attributes)
                    rec = self._process_scope(scope, agent, counts)
                    if rec is not None and rec.changed:
                        _rewrite(sm.scope.attributes, scope)
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is None:
                        continue
                    for point in getattr(metric, kind).data_points:
                        attrs = decode_attributes(point.attributes)
                        rec = _Record(self._record_agent(agent, attrs), counts)
                        self._process_attributes(attrs, rec)
                        exemplars = [
                            (e.filtered_attributes, decode_attributes(e.filtered_attributes))
                            for e in point.exemplars
                        ]
                        for _, filtered in exemplars:
                            self._process_attributes(filtered, rec)
                        self._finish(rec, attrs)
                        if rec.changed:
                            _rewrite(point.attributes, attrs)
                            for kvs, filtered in exemplars:
                                _rewrite(kvs, filtered)
        self._flush_counts(counts)
        return data

    # --- records ---------------------------------------------------------------------------------

    def _process_resource(
        self, attrs: dict[str, Any], counts: _Counts, encoded: _KVs | None = None
    ) -> str | None:
        """Redact a resource's attributes (``encoded``: rewrite that protobuf list if changed)
        and return its agent, from ``service.name``."""
        service = attrs.get("service.name")
        agent = agent_of_service(service) if isinstance(service, str) and service else None
        rec = _Record(agent or UNKNOWN_AGENT, counts)
        self._process_attributes(attrs, rec)
        self._finish(rec, attrs)
        if encoded is not None and rec.changed:
            _rewrite(encoded, attrs)
        return agent

    def _process_scope(
        self, attrs: dict[str, Any], agent: str | None, counts: _Counts
    ) -> _Record | None:
        if not attrs:
            return None
        rec = _Record(agent or UNKNOWN_AGENT, counts)
        self._process_attributes(attrs, rec)
        self._finish(rec, attrs)
        return rec

    def _record_agent(self, resource_agent: str | None, attrs: dict[str, Any]) -> str:
        """The normaliser's ``agentwatch.agent`` (it honours normalize's ``service_names``),
        else the resource's; when the two disagree, every agent's keys (never fewer)."""
        agent = attrs.get(am.AGENT)
        if not agent or not isinstance(agent, str):
            return resource_agent or UNKNOWN_AGENT
        if agent not in self._placeholders or (
            resource_agent is not None and agent != resource_agent
        ):
            return UNKNOWN_AGENT
        return agent

    def _process_attributes(self, attrs: dict[str, Any], rec: _Record) -> None:
        """Redact one attribute map: first the keys that mean something (content, identity),
        found with one set intersection, then the values, where set operations find the
        strings already known clean so that only new ones are scrubbed."""
        if self._key_globs:  # allow or block lists: any key may go
            self._process_keys(attrs, list(attrs), rec, with_values=True)
            return
        special = attrs.keys() & self._special[rec.agent]
        hashed: tuple[str, ...] = ()
        if special:
            # in the record's order, the order the sizes of removed values are appended in
            in_order = sorted(special, key=list(attrs).index) if len(special) > 1 else special
            hashed = self._process_keys(attrs, in_order, rec, with_values=False)
        values = attrs.values()
        if not _FLAT_TYPES.issuperset(map(type, values)):  # maps, lists or bytes to walk
            self._process_keys(attrs, [k for k in attrs if k not in hashed], rec)
            return
        strings = [v for v in values if v.__class__ is str]
        pending = set(strings).difference(self._clean)  # walks the record's side, not the memo
        event_id = attrs.get(am.EVENT_ID)
        if event_id in pending and _DIGEST.fullmatch(event_id):
            pending.discard(event_id)  # the normaliser's own digest: no text to scrub
        for text in pending:
            if text in self._memo or not self._clean_after_scrub(text, rec):
                self._process_keys(attrs, [k for k in attrs if k not in hashed], rec)
                return
        total = sum(map(len, strings))
        for key in hashed:  # a hash replaced an e-mail: not a kept string
            total -= len(attrs[key])
        rec.total_chars += total
        rec.untouched.append((attrs, hashed))

    def _clean_after_scrub(self, text: str, rec: _Record) -> bool:
        """Scrub and cut a string not seen before; True when it stays as it is."""
        done = self._scrub_cut(text)
        clean = not done[1] and not done[2]
        if len(text) <= _MEMO_MAX_LENGTH:
            if len(self._memo) + len(self._clean) >= _MEMO_LIMIT:
                self._memo.clear()
                self._clean.clear()
            if clean:
                self._clean.add(text)
            else:
                self._memo[text] = done
        elif not clean:
            if rec.scrubbed is None:
                rec.scrubbed = {}
            rec.scrubbed[text] = done
        return clean

    def _process_keys(
        self,
        attrs: dict[str, Any],
        keys: Iterable[str],
        rec: _Record,
        *,
        with_values: bool = True,
    ) -> tuple[str, ...]:
        """Apply each key's action; ``with_values=False`` leaves kept values alone (the caller
        scans them). Returns the keys whose e-mail was replaced by its hash."""
        agent = rec.agent
        actions = self._actions[agent]
        doomed: list[str] = []
        hashed: list[str] = []
        lengths: list[tuple[str, int]] = []
        for key in keys:
            value = attrs[key]
            action = actions.get(key)
            if action is None:
                action = self._resolve(agent, key)
            act, ck, kind = action
            if act == BY_EVENT:
                act, ck, kind = self._resolve_for_event(agent, rec.event, key)
            if act == KEEP:
                if with_values:
                    self._process_value(attrs, key, value, rec)
            elif act == CONTENT:
                assert ck is not None
                doomed.append(key)
                _count(rec, kind)
                size = self._size(value, ck.size_in_bytes, agent)
                if size is not None:
                    lengths.append((ck.length_key or f"{key}.length", size))
            elif act == BLOCK:
                doomed.append(key)
                _count(rec, "blocked_key")
            elif act == NOT_ALLOWED:
                doomed.append(key)
                _count(rec, "not_allowed_key")
            else:
                outcome = self._identity(attrs, key, value, act == EMAIL, rec, with_values)
                if outcome is _DROPPED:
                    doomed.append(key)
                elif outcome is _HASHED:
                    hashed.append(key)
        if doomed:
            rec.changed = True
            for key in doomed:
                del attrs[key]
        for key, size in lengths:
            if key not in attrs and (actions.get(key) or self._resolve(agent, key)) is _KEEP:
                attrs[key] = size
        return tuple(hashed)

    def _identity(
        self,
        attrs: dict[str, Any],
        key: str,
        value: Any,
        always_email: bool,
        rec: _Record,
        with_values: bool,
    ) -> str:
        """Hash or drop an e-mail in an identity key; any other value is kept."""
        if (
            not isinstance(value, str)
            or self.config.emails == "keep"
            or not value
            or not (always_email or _EMAIL.fullmatch(value.strip()))
        ):
            if with_values:
                self._process_value(attrs, key, value, rec)
            return _KEPT
        if self.config.emails == "drop":
            _count(rec, "email_dropped")
            return _DROPPED
        attrs[key] = self.hash_email(value)
        rec.changed = True
        _count(rec, "email_hashed")
        return _HASHED

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

    def _process_value(self, container: Any, key: Any, value: Any, rec: _Record) -> None:
        """A kept value of any type, found at ``container[key]``."""
        if isinstance(value, str):
            if value in self._clean:
                rec.total_chars += len(value)
                if len(value) > SHORT_VALUE:
                    rec.strings.append((container, key, value, 0))
            else:
                self._keep_string(container, key, value, rec)
        elif isinstance(value, dict):
            self._process_attributes(value, rec)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self._process_value(value, i, item, rec)
        elif isinstance(value, bytes) and self.scrubber is not None:
            self._process_bytes(container, key, value, rec)

    def _keep_string(self, container: Any, key: Any, text: str, rec: _Record) -> None:
        """Scrub and cut one kept string; short strings are memoised (they repeat a lot)."""
        done = self._memo.get(text)
        if done is None and rec.scrubbed is not None:
            done = rec.scrubbed.get(text)
        if done is None:
            done = self._scrub_cut(text)
            if len(text) <= _MEMO_MAX_LENGTH:
                if len(self._memo) + len(self._clean) >= _MEMO_LIMIT:
                    self._memo.clear()
                    self._clean.clear()
                if done[1] or done[2]:
                    self._memo[text] = done
                else:
                    self._clean.add(text)
        kept, kinds, removed = done
        if kinds:
            for kind in kinds:
                _count(rec, kind)
            if not removed:
                container[key] = kept
                rec.changed = True
        if removed:
            container[key] = with_marker(kept, removed)
            rec.truncated = rec.changed = True
            _count(rec, "truncated")
        rec.total_chars += len(kept)
        if len(kept) > SHORT_VALUE:
            rec.strings.append((container, key, kept, removed))

    def _scrub_cut(self, text: str) -> tuple[str, tuple[str, ...], int]:
        limit = self.config.max_value_chars
        if self.scrubber is not None:
            return scrub_and_cut(self.scrubber, text, limit)
        if 0 < limit < len(text):
            return text[:limit], (), len(text) - limit
        return text, (), 0

    def _process_bytes(self, container: Any, key: Any, value: bytes, rec: _Record) -> None:
        """Scrub a bytes value as text. Bytes that are not UTF-8 (binary output, Latin-1, a
        token next to a stray byte) become lone surrogates that no pattern matches and that
        round-trip exactly, so the ASCII secrets around them are still found."""
        assert self.scrubber is not None
        text = value.decode("utf-8", "surrogateescape")
        scrubbed, kinds = self.scrubber.scrub(text)
        if kinds:
            container[key] = scrubbed.encode("utf-8", "surrogateescape")
            rec.changed = True
            for kind in kinds:
                _count(rec, kind)

    def _scrub_plain(self, text: str, rec: _Record) -> str:
        """A string outside any attribute (span status): scrubbed and cut, not budgeted."""
        kept, kinds, removed = self._scrub_cut(text)
        for kind in kinds:
            _count(rec, kind)
        return with_marker(kept, removed) if removed else kept

    def _process_body(self, record: LogRecord, rec: _Record) -> list[Any] | None:
        """Remove a body that is content, else redact it; returns the kept body in a list
        (where the record budget can still cut it), ``None`` when removed."""
        body = record.body
        act, ck, kind = self._resolve_for_event(rec.agent, rec.event, BODY)
        if act == CONTENT:
            assert ck is not None
            _count(rec, kind)
            size = self._size(body, ck.size_in_bytes, rec.agent)
            record.body = None
            if size is not None and "body.length" not in record.attributes:
                record.attributes["body.length"] = size
            return None
        holder = [body]
        self._process_value(holder, 0, body, rec)
        return holder

    def _size(self, value: Any, in_bytes: bool, agent: str) -> int | None:
        """Length of a removed value: characters (or UTF-8 bytes), bytes, or number of items;
        none for the agent's own placeholder (its length would be a lie)."""
        if isinstance(value, str):
            if value in self._placeholders[agent]:
                return None
            return len(value.encode("utf-8", "surrogatepass")) if in_bytes else len(value)
        if isinstance(value, bytes | list | dict):
            return len(value)
        return None

    def _finish(self, rec: _Record, attrs: dict[str, Any]) -> None:
        """Apply the per-record budget, then mark the record if anything was cut."""
        budget = self.config.max_record_chars
        if budget > 0 and rec.total_chars > budget:
            for container, hashed in rec.untouched:
                rec.strings.extend(
                    (container, key, value, 0)
                    for key, value in container.items()
                    if value.__class__ is str and len(value) > SHORT_VALUE and key not in hashed
                )
            long_total = sum(len(kept) for _, _, kept, _ in rec.strings)
            room = max(budget - (rec.total_chars - long_total), 0)
            cap = _water_level([len(kept) for _, _, kept, _ in rec.strings], room)
            for container, key, kept, removed in rec.strings:
                if len(kept) > cap:
                    cut = cut_point(kept, cap)
                    container[key] = with_marker(kept[:cut], removed + len(kept) - cut)
            rec.truncated = rec.changed = True
            _count(rec, "truncated_record")
        if rec.truncated and TRUNCATED not in attrs:
            attrs[TRUNCATED] = True

    # --- counters --------------------------------------------------------------------------------

    def _flush_counts(self, counts: _Counts) -> None:
        """One counter update per kind and agent per batch, not per value."""
        for (kind, agent), n in counts.items():
            REDACTIONS.labels(self.name, kind, agent).inc(n)


def _count(rec: _Record, kind: str) -> None:
    key = (kind, rec.agent)
    rec.counts[key] = rec.counts.get(key, 0) + 1


def _rewrite(kvs: _KVs, attrs: dict[str, Any]) -> None:
    """Replace a protobuf attribute list with the redacted ``attrs``."""
    del kvs[:]
    encode_attributes(attrs, kvs)


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


def _create(name: str, config: RedactionConfig) -> RedactionProcessor:
    if config.extra_patterns_file:
        load_patterns(config.extra_patterns_file)  # fail at start with the file named
    return RedactionProcessor(name, config)


FACTORY = Factory(
    type_name="redaction",
    kind="processor",
    config_class=RedactionConfig,
    create=_create,
)
