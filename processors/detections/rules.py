"""Detection rules: the rule-file format, and matching as pure functions over an event's fields.

A rule file (YAML, format in docs/detections.md) is validated by the pydantic models below; a
bad file is a ``RuleFileError`` naming the file, the rule and the exact path of the bad field.
A ``RuleSet`` compiles the rules once (regexes, named lists, which fields each rule needs) and
``RuleSet.evaluate`` matches one event given as ``EventFields``: rule field name -> the values
of that field. Nothing here knows about OTLP or protobuf, so the processor, ``agentwatch rules
test`` and any other caller share the same matching.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from collector import agent_model as am
from processors.detections.internal.literals import LiteralScan
from processors.secrets import SecretScrubber, truncate

DEFAULT_RULES_FILE = Path(__file__).parent.parent / "rules" / "default.yaml"

FIELDS: dict[str, str] = {
    "event": am.EVENT,
    "agent": am.AGENT,
    "tool_name": am.TOOL_NAME,
    "command": am.COMMAND,
    "file_path": am.FILE_PATH,
    "mcp_server": am.MCP_SERVER,
    "mcp_servers": am.MCP_SERVERS,
    "decision": am.DECISION,
    "decision_source": am.DECISION_SOURCE,
    "permission_mode": am.PERMISSION_MODE,
    "approval_policy": am.APPROVAL_POLICY,
    "sandbox": am.SANDBOX,
    "tool_arguments": am.TOOL_ARGUMENTS,
    "prompt_text": am.PROMPT_TEXT,
}
"""Rule field name -> the normalised attribute it reads."""
LIST_FIELDS = frozenset({"mcp_servers"})
"""Comma-separated attributes: a condition holds when it holds for some element."""

EVENT_TYPES = frozenset(e.value for e in am.EventType)
OPERATORS = ("equals", "in", "not_in", "regex", "contains", "exists", "in_list", "not_in_list")
SEVERITIES = ("low", "medium", "high", "critical")
Severity = Literal["low", "medium", "high", "critical"]

Values = tuple[str, ...]
"""A field's values: one for ordinary fields, several for comma-separated lists."""
EventFields = Mapping[str, Values]
"""One event as rules see it: rule field name (``FIELDS``) -> its values; absent or empty
fields are left out."""
Evidence = list[tuple[str, Values]]
"""(field, the values that made the rule hold), in the order the rule names them."""


class RuleFileError(ValueError):
    """A rule file that cannot be used; the message names the file, the rule and the problem."""


# --- reading an event -------------------------------------------------------------------------


def attribute_text(value: Any) -> str:
    """An attribute value as rules read it: text as is, booleans ``true``/``false``, numbers
    as written; lists, maps, bytes and unset values are not text ("")."""
    if type(value) is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return ""


def event_fields(attributes: Mapping[str, Any]) -> dict[str, Values]:
    """The rule fields of one event's normalised attributes (``agentwatch.*`` keys)."""
    fields: dict[str, Values] = {}
    for name, key in _FIELD_KEYS:
        value = attributes.get(key)
        if value is None:
            continue
        text = value if type(value) is str else attribute_text(value)
        if not text:
            continue
        if name in LIST_FIELDS:
            fields[name] = tuple(p.strip() for p in text.split(",") if p.strip())
        else:
            fields[name] = (text,)
    return fields


_FIELD_KEYS = tuple(FIELDS.items())


# --- the file format --------------------------------------------------------------------------


def _not_null(value: object) -> object:
    # an explicit null would otherwise be taken for "not given"
    if value is None:
        raise ValueError("expected a value, a list or operators")
    return value


def _word(op: str) -> Callable[[object], str]:
    def check(arg: object) -> str:
        if not isinstance(arg, str | int) or isinstance(arg, bool):
            raise ValueError(f"{op} must be a value")
        return str(arg).strip().lower()

    return check


def _words(op: str) -> Callable[[object], list[str]]:
    def check(arg: object) -> list[str]:
        if not isinstance(arg, list) or not all(isinstance(a, str | int) for a in arg):
            raise ValueError(f"{op} must be a list of values")
        return [str(a).strip().lower() for a in arg]

    return check


def _list_name(op: str) -> Callable[[object], str]:
    def check(arg: object) -> str:
        if not isinstance(arg, str) or not arg:
            raise ValueError(f"{op} must name a list")
        return arg

    return check


def _regex(arg: object) -> str:
    if not isinstance(arg, str) or not arg:
        raise ValueError("regex must be non-empty text")
    try:
        re.compile(arg)
    except re.error as e:
        raise ValueError(f"invalid regex: {e}") from e
    return arg


def _flag(name: str) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value

    return check


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ConditionSpec(_Spec):
    """Operators on one field, all of which must hold; ``Bash`` is short for ``{equals: Bash}``
    and a list for ``{in: [...]}``. Values are compared ignoring case and surrounding spaces."""

    equals: Annotated[str | None, BeforeValidator(_word("equals"))] = None
    in_: Annotated[list[str] | None, BeforeValidator(_words("in"))] = Field(None, alias="in")
    not_in: Annotated[list[str] | None, BeforeValidator(_words("not_in"))] = None
    regex: Annotated[str | None, BeforeValidator(_regex)] = None
    contains: Annotated[str | None, BeforeValidator(_word("contains"))] = None
    exists: Annotated[bool | None, BeforeValidator(_flag("exists"))] = None
    in_list: Annotated[str | None, BeforeValidator(_list_name("in_list"))] = None
    not_in_list: Annotated[str | None, BeforeValidator(_list_name("not_in_list"))] = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, raw: object) -> object:
        if isinstance(raw, str | int | bool):
            return {"equals": raw}
        if isinstance(raw, list):
            return {"in": raw}
        if not isinstance(raw, dict) or not raw:
            raise ValueError("expected a value, a list or operators")
        return raw


Condition = Annotated[ConditionSpec | None, BeforeValidator(_not_null)]
Matches = Annotated[list["MatchSpec"] | None, BeforeValidator(_not_null), Field(min_length=1)]


class MatchSpec(_Spec):
    """``all`` / ``any`` / ``not`` over matches, and field conditions; several keys in one
    mapping must all hold, and their evidence follows the order they are written in."""

    all: Matches = None
    any: Matches = None
    not_: Annotated[MatchSpec | None, BeforeValidator(_not_null)] = Field(None, alias="not")
    event: Condition = None
    agent: Condition = None
    tool_name: Condition = None
    command: Condition = None
    file_path: Condition = None
    mcp_server: Condition = None
    mcp_servers: Condition = None
    decision: Condition = None
    decision_source: Condition = None
    permission_mode: Condition = None
    approval_policy: Condition = None
    sandbox: Condition = None
    tool_arguments: Condition = None
    prompt_text: Condition = None
    _keys: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _keep_order(cls, raw: object, handler: ModelWrapValidatorHandler[MatchSpec]) -> MatchSpec:
        if not isinstance(raw, dict) or not raw:
            raise ValueError("a match must be a non-empty mapping")
        spec = handler(raw)
        spec._keys = tuple(raw)
        return spec

    def parts(self) -> list[tuple[str, MatchSpec | list[MatchSpec] | ConditionSpec]]:
        """(key, value) as written: combinators and field conditions."""
        out: list[tuple[str, MatchSpec | list[MatchSpec] | ConditionSpec]] = []
        for key in self._keys:
            value = getattr(self, "not_" if key == "not" else key)
            out.append((key, value))
        return out


assert set(MatchSpec.model_fields) - {"all", "any", "not_"} == set(FIELDS)


def _event_type(event: str) -> str:
    if event not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event!r}")
    return event


def _event_list(raw: object) -> object:
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list) or not raw:
        raise ValueError("'events' must be a list of event types")
    return raw


def _description(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("'description' is required")
    return " ".join(raw.split())


class RuleSpec(_Spec):
    """One rule as written in a rule file."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,99}$")
    severity: Severity
    description: Annotated[str, BeforeValidator(_description)]
    events: Annotated[
        list[Annotated[str, AfterValidator(_event_type)]], BeforeValidator(_event_list)
    ] = Field(default_factory=lambda: [am.EventType.TOOL_CALL.value])
    match: MatchSpec
    sensitive: Annotated[bool, BeforeValidator(_flag("'sensitive'"))] = False
    when_sensitive: Annotated[bool, BeforeValidator(_flag("'when_sensitive'"))] = False
    once_per_session: Annotated[bool, BeforeValidator(_flag("'once_per_session'"))] = False
    enabled: Annotated[bool, BeforeValidator(_flag("'enabled'"))] = True
    tags: list[str] = Field(default_factory=list)


def _none_is_empty(raw: object) -> object:
    return {} if raw is None else raw


def _none_is_no_rules(raw: object) -> object:
    return [] if raw is None else raw


def _list_items(raw: object) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(i, str | int) for i in raw):
        raise ValueError("must be a list of strings")
    return [str(i).strip().lower() for i in raw]


class RuleFileSpec(_Spec):
    """A rule file: named lists and rules."""

    lists: Annotated[
        dict[str, Annotated[list[str], BeforeValidator(_list_items)]],
        BeforeValidator(_none_is_empty),
    ] = Field(default_factory=dict)
    rules: Annotated[list[RuleSpec], BeforeValidator(_none_is_no_rules)] = Field(
        default_factory=list
    )


# --- rules in memory --------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    description: str
    match: MatchSpec = field(repr=False)
    events: frozenset[str]
    sensitive: bool = False
    when_sensitive: bool = False
    once_per_session: bool = False
    enabled: bool = True
    tags: tuple[str, ...] = ()
    source: str = ""
    """The file the rule comes from."""
    position: int = 0
    """Its index in that file's ``rules`` (0-based)."""

    @property
    def where(self) -> str:
        return f"{self.source}: rule {self.position + 1} (id {self.id!r})"


@dataclass(frozen=True)
class Match:
    rule: Rule
    evidence: Evidence


def render_evidence(match: Match, scrubber: SecretScrubber, limit: int) -> str:
    """``field=value; ...`` of what matched, secrets scrubbed, then truncated."""
    parts = [f"{name}={','.join(values)}" for name, values in match.evidence if values]
    return truncate(scrubber.scrub_text("; ".join(parts)), limit)[0]


def load_rules(path: str | Path) -> tuple[list[Rule], dict[str, frozenset[str]]]:
    """Parse one rule file; ``RuleFileError`` names the file, the rule and what is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise RuleFileError(f"{path}: cannot read: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise RuleFileError(f"{path}: not valid YAML: {e}") from e
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise RuleFileError(f"{path}: expected a mapping with 'rules' (and optional 'lists')")
    try:
        spec = RuleFileSpec.model_validate(doc)
    except ValidationError as e:
        problems = [_problem(error, doc) for error in e.errors()]
        raise RuleFileError(f"{path}: " + "; ".join(problems)) from None
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, rule_spec in enumerate(spec.rules):
        rule = _rule(rule_spec, str(path), index)
        if rule.id in seen:
            raise RuleFileError(f"{rule.where}: duplicate id (at rules[{index}].id)")
        seen.add(rule.id)
        rules.append(rule)
    lists = {name: frozenset(items) for name, items in spec.lists.items()}
    return rules, lists


def _rule(spec: RuleSpec, source: str, position: int) -> Rule:
    return Rule(
        id=spec.id,
        severity=spec.severity,
        description=spec.description,
        match=spec.match,
        events=frozenset(spec.events),
        sensitive=spec.sensitive,
        when_sensitive=spec.when_sensitive,
        once_per_session=spec.once_per_session,
        enabled=spec.enabled,
        tags=tuple(spec.tags),
        source=source,
        position=position,
    )


_RULE_KEY_PROBLEMS = {
    "id": "'id' must be lower-case letters, digits, '-', '_', '.'",
    "severity": f"'severity' must be one of {', '.join(SEVERITIES)}",
    "events": "'events' must be a list of event types",
    "tags": "'tags' must be a list of strings",
}


def _problem(error: ErrorDetails, doc: Mapping[str, Any]) -> str:
    """One validation error in the words of a rule-file author, with where it is."""
    loc = error["loc"]
    kind = error["type"]
    ours = str(error["msg"]).removeprefix("Value error, ") if kind == "value_error" else None
    at = f" (at {_path(loc)})"
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        index = loc[1]
        raw = (doc.get("rules") or [])[index]
        where = f"rule {index + 1}"
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            where += f" (id {raw['id']!r})"
        return f"{where}: {_rule_problem(loc[2:], kind, ours)}{at}"
    if loc and loc[0] == "lists":
        if len(loc) >= 2:
            return f"list {loc[1]!r} {ours or 'must be a list of strings'}{at}"
        return f"'lists' must map names to lists of strings{at}"
    if loc and loc[0] == "rules":
        return f"'rules' must be a list{at}"
    if kind == "extra_forbidden" and loc:
        return f"unknown top-level key {loc[0]!r}"
    return f"{ours or error['msg']}{at}"


def _rule_problem(loc: tuple[int | str, ...], kind: str, ours: str | None) -> str:
    if not loc:
        return "expected a mapping"
    key = loc[0]
    if key == "match":
        return _match_problem(loc[1:], kind, ours)
    if kind == "extra_forbidden":
        return f"unknown rule key {key!r}"
    if kind == "missing":
        return f"{key!r} is required"
    if ours is not None:
        return ours
    return _RULE_KEY_PROBLEMS.get(str(key), f"{key!r} is not valid")


def _match_problem(loc: tuple[int | str, ...], kind: str, ours: str | None) -> str:
    if kind == "missing":
        return "'match' is required"
    fields = [i for i, part in enumerate(loc) if isinstance(part, str) and part in FIELDS]
    if fields:  # inside a field's condition
        name = loc[fields[-1]]
        rest = loc[fields[-1] + 1 :]
        if kind == "extra_forbidden" and rest:
            return f"field {name!r}: unknown operator {rest[0]!r} (use {', '.join(OPERATORS)})"
        return f"field {name!r}: {ours or 'expected a value, a list or operators'}"
    if kind == "extra_forbidden" and loc:
        return f"unknown match field {loc[-1]!r}"
    if loc and loc[-1] in ("all", "any"):
        return f"{loc[-1]!r} must be a non-empty list of matches"
    return ours or "a match must be a non-empty mapping"


def _path(loc: tuple[int | str, ...]) -> str:
    """``rules[2].match.any[0].command.regex``: where a value sits in the file."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


# --- compiled rules ---------------------------------------------------------------------------
#
# Most events match no rule, so the work per event is kept to what can tell that quickly. Rules
# are grouped by event type. Every regex gets the literals one of which any match must contain
# (``internal.literals``); per field, one C-level scan of the lower-cased value finds which of
# those literals occur, which yields the "signals" of the event: the fields present and the
# regexes that may match. A rule, and each regex inside it, runs only when a signal it needs is
# there, so an ordinary command costs one scan instead of a dozen regex searches.


def _hit(field: str, index: int) -> str:
    """The signal "regex ``index`` on ``field`` may match"."""
    return f"{field}~{index}"


Predicate = Callable[[str], object]


class _Test(Protocol):
    @property
    def needs(self) -> frozenset[str] | None:
        """Signals of which at least one must be there for the test to hold (``None``: it can
        hold without any)."""

    @property
    def cheap(self) -> bool:
        """No regex inside: worth running first in an ``all``."""

    def evaluate(self, fields: EventFields, signals: set[str]) -> Evidence | None:
        """Evidence when the test holds (possibly empty), ``None`` when it does not."""
        ...


@dataclass(frozen=True, slots=True)
class _FieldTest:
    field: str
    exists: bool | None
    predicates: tuple[Predicate, ...]
    needs: frozenset[str] | None
    cheap: bool
    regex_signal: str | None
    """The signal without which this test's regex cannot match."""

    def evaluate(self, fields: EventFields, signals: set[str]) -> Evidence | None:
        if self.regex_signal is not None and self.regex_signal not in signals:
            return None
        values = fields.get(self.field, ())
        if self.exists is not None and bool(values) != self.exists:
            return None
        if len(values) == 1:  # the usual case: no tuple building
            value = values[0]
            for predicate in self.predicates:
                if not predicate(value):
                    return None
            return [(self.field, values)]
        hits = values
        for predicate in self.predicates:
            hits = tuple(v for v in hits if predicate(v))
            if not hits:
                return None
        return [(self.field, hits)] if hits else []


@dataclass(frozen=True, slots=True)
class _AllTest:
    children: tuple[_Test, ...]
    order: tuple[int, ...]
    """Cheap children first; evidence still follows the written order."""
    needs: frozenset[str] | None
    cheap: bool

    def evaluate(self, fields: EventFields, signals: set[str]) -> Evidence | None:
        found: list[Evidence] = [[]] * len(self.children)
        for i in self.order:
            evidence = self.children[i].evaluate(fields, signals)
            if evidence is None:
                return None
            found[i] = evidence
        return [e for evidence in found for e in evidence]


@dataclass(frozen=True, slots=True)
class _AnyTest:
    children: tuple[_Test, ...]
    needs: frozenset[str] | None
    cheap: bool

    def evaluate(self, fields: EventFields, signals: set[str]) -> Evidence | None:
        held = False
        evidence: Evidence = []
        for child in self.children:  # every branch that holds adds its evidence
            found = child.evaluate(fields, signals)
            if found is not None:
                held = True
                evidence.extend(found)
        return evidence if held else None


@dataclass(frozen=True, slots=True)
class _NotTest:
    child: _Test
    cheap: bool
    needs: frozenset[str] | None = None

    def evaluate(self, fields: EventFields, signals: set[str]) -> Evidence | None:
        return [] if self.child.evaluate(fields, signals) is None else None


def _predicate(op: str, arg: Any, lists: Mapping[str, frozenset[str]]) -> Predicate:
    if op == "regex":
        return re.compile(arg).search
    if op == "equals":
        return lambda v: v.strip().lower() == arg
    if op == "contains":
        return lambda v: arg in v.strip().lower()
    words = frozenset(arg) if op in ("in", "not_in") else lists[arg]
    if op in ("in", "in_list"):
        return lambda v: v.strip().lower() in words
    return lambda v: v.strip().lower() not in words


def regexes_of(spec: MatchSpec) -> Iterable[tuple[str, str]]:
    """(field, regex) of every regex condition in a match, nested ones included."""
    for key, value in spec.parts():
        if isinstance(value, list):
            for child in value:
                yield from regexes_of(child)
        elif isinstance(value, MatchSpec):
            yield from regexes_of(value)
        elif value.regex is not None:
            yield key, value.regex


class _Compiler:
    """Turns one rule's ``MatchSpec`` into tests, with the rule set's named lists bound and
    each regex given its signal."""

    def __init__(
        self,
        rule: Rule,
        lists: Mapping[str, frozenset[str]],
        signal_of: Mapping[tuple[str, str], str],
    ) -> None:
        self.rule = rule
        self.lists = lists
        self.signal_of = signal_of

    def node(self, spec: MatchSpec, path: str) -> _Test:
        parts: list[_Test] = []
        for key, value in spec.parts():
            if isinstance(value, list):
                children = [self.node(v, f"{path}.{key}[{i}]") for i, v in enumerate(value)]
                parts.append(self.combine(key, children))
            elif isinstance(value, MatchSpec):
                child = self.node(value, f"{path}.not")
                parts.append(_NotTest(child, child.cheap))
            else:
                parts.append(self.field(key, value, f"{path}.{key}"))
        return parts[0] if len(parts) == 1 else self.combine("all", parts)

    def combine(self, kind: str, children: list[_Test]) -> _Test:
        cheap = all(c.cheap for c in children)
        if kind == "any":  # one of them must hold: one of their signals
            wants = [c.needs for c in children]
            needs = None if None in wants else frozenset(s for w in wants if w for s in w)
            return _AnyTest(tuple(children), needs, cheap)
        known = [c.needs for c in children if c.needs is not None]  # all must: any one's
        order = tuple(sorted(range(len(children)), key=lambda i: not children[i].cheap))
        return _AllTest(tuple(children), order, min(known, key=len) if known else None, cheap)

    def field(self, name: str, spec: ConditionSpec, path: str) -> _FieldTest:
        predicates: list[Predicate] = []
        for op in OPERATORS:
            arg = getattr(spec, "in_" if op == "in" else op)
            if arg is None or op == "exists":
                continue
            if op in ("in_list", "not_in_list") and arg not in self.lists:
                raise RuleFileError(
                    f"{self.rule.where}: list {arg!r} is not defined (at {path}.{op})"
                )
            predicates.append(_predicate(op, arg, self.lists))
        signal = None if spec.regex is None else self.signal_of[(name, spec.regex)]
        needs: frozenset[str] | None = frozenset([signal or name])
        if spec.exists is False and not predicates:
            needs = None  # holds on an event without the field
        return _FieldTest(name, spec.exists, tuple(predicates), needs, signal is None, signal)


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: Rule
    test: _Test


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to run for one event type."""

    rules: tuple[_Compiled, ...]
    escalations: tuple[_Compiled, ...]
    """``when_sensitive`` rules, run when a sensitive rule matched."""
    scans: tuple[tuple[str, LiteralScan], ...]
    """(field, which of its regexes may match) for each field these rules search."""


class RuleSet:
    """Rules compiled for matching; ``evaluate`` is a pure function of an event's fields."""

    def __init__(self, rules: Sequence[Rule], lists: Mapping[str, frozenset[str]]) -> None:
        self.rules = list(rules)
        self.lists = dict(lists)
        enabled = [r for r in self.rules if r.enabled]
        by_field: dict[str, list[str]] = {}
        for rule in enabled:
            for name, regex in regexes_of(rule.match):
                if regex not in by_field.setdefault(name, []):
                    by_field[name].append(regex)
        signal_of = {
            (name, regex): _hit(name, i)
            for name, regexes in by_field.items()
            for i, regex in enumerate(regexes)
        }
        scans = {
            name: LiteralScan(regexes, [signal_of[(name, regex)] for regex in regexes])
            for name, regexes in by_field.items()
        }
        compiled = [
            _Compiled(
                rule,
                _Compiler(rule, self.lists, signal_of).node(
                    rule.match, f"rules[{rule.position}].match"
                ),
            )
            for rule in enabled
        ]
        self._plans: dict[str, _Plan] = {}
        for event in sorted({e for c in compiled for e in c.rule.events}):
            here = [c for c in compiled if event in c.rule.events]
            searched = sorted({name for c in here for name, _ in regexes_of(c.rule.match)})
            self._plans[event] = _Plan(
                rules=tuple(c for c in here if not c.rule.when_sensitive),
                escalations=tuple(c for c in here if c.rule.when_sensitive),
                scans=tuple((name, scans[name]) for name in searched),
            )
        self.event_types = frozenset(e for e, plan in self._plans.items() if plan.rules)
        """Event types some rule can match (escalations need a plain rule to match first)."""

    def evaluate(self, fields: EventFields) -> list[Match]:
        """Every rule that matches the event, in rule order, escalations last."""
        event = fields.get("event")
        plan = self._plans.get(event[0]) if event else None
        if plan is None or not plan.rules:
            return []
        signals = set(fields)
        for name, scan in plan.scans:
            for value in fields.get(name, ()):
                scan.candidates(value, signals)
        matches = _run(plan.rules, fields, signals)
        sensitive = tuple(m.rule.id for m in matches if m.rule.sensitive)
        if sensitive and plan.escalations:
            for m in _run(plan.escalations, fields, signals):
                matches.append(Match(m.rule, [("sensitive_rules", sensitive), *m.evidence]))
        return matches


def _run(rules: Iterable[_Compiled], fields: EventFields, signals: set[str]) -> list[Match]:
    matches: list[Match] = []
    for c in rules:
        needs = c.test.needs
        if needs is not None and needs.isdisjoint(signals):
            continue  # nothing it could match on: no regex runs
        evidence = c.test.evaluate(fields, signals)
        if evidence is not None:
            matches.append(Match(c.rule, evidence))
    return matches


def build_rule_set(
    rule_files: Sequence[str | Path],
    lists: Mapping[str, Sequence[str]] | None = None,
    disabled: Iterable[str] = (),
) -> RuleSet:
    """Rules of every file in order (ids unique across files); config ``lists`` win."""
    rules: list[Rule] = []
    merged: dict[str, frozenset[str]] = {}
    owner: dict[str, str] = {}
    for path in rule_files:
        file_rules, file_lists = load_rules(path)
        for rule in file_rules:
            if rule.id in owner:
                raise RuleFileError(
                    f"{path}: rule id {rule.id!r} is already defined in {owner[rule.id]}"
                    f" (at rules[{rule.position}].id)"
                )
            owner[rule.id] = str(path)
        rules.extend(file_rules)
        merged.update(file_lists)
    for name, items in (lists or {}).items():
        merged[name] = frozenset(str(i).strip().lower() for i in items)
    off = set(disabled)
    return RuleSet([r for r in rules if r.id not in off], merged)
