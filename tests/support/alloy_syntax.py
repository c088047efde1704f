"""A parser for Grafana Alloy's configuration syntax, enough to check configs/examples/alloy.

No maintained Alloy parser exists on PyPI or npm (Alloy's own is Go, in its ``syntax``
package), so this follows the syntax reference (grafana.com/docs/alloy/latest/get-started/
configuration-syntax/): ``//`` and ``/* */`` comments; blocks ``name.part "label" { ... }``;
attributes ``name = expression``; expressions of literals (strings with escapes, raw strings in
backquotes, numbers, ``true``/``false``/``null``), arrays, objects, references ``a.b.c``,
indexing, function calls and unary/binary operators. It rejects anything else with the line and
column, which is what a parse check needs; it does not evaluate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[-+*/%^<>!=.,\[\]{}()])
    """,
    re.VERBOSE | re.DOTALL,
)
_BINARY = {
    "||": 1, "&&": 2, "==": 3, "!=": 3, "<": 3, ">": 3, "<=": 3, ">=": 3,
    "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "^": 6,
}  # fmt: skip


class AlloySyntaxError(ValueError):
    pass


@dataclass
class Token:
    kind: str
    text: str
    line: int
    column: int


@dataclass
class Attribute:
    name: str
    value: Any


@dataclass
class Block:
    name: str
    label: str | None
    body: list[Attribute | Block] = field(default_factory=list)

    def attribute(self, name: str) -> Any:
        return next(a.value for a in self.body if isinstance(a, Attribute) and a.name == name)

    def blocks(self, name: str) -> list[Block]:
        return [b for b in self.body if isinstance(b, Block) and b.name == name]


@dataclass(frozen=True)
class Reference:
    """``a.b.c``: a component export or a standard-library name."""

    path: str


@dataclass(frozen=True)
class Call:
    function: str
    arguments: tuple[Any, ...]


def tokenize(text: str) -> list[Token]:
    tokens, pos, line, line_start = [], 0, 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise AlloySyntaxError(f"{line}:{pos - line_start + 1}: unexpected {text[pos]!r}")
        kind = m.lastgroup or ""
        if kind not in ("ws", "comment"):
            tokens.append(Token(kind, m.group(), line, pos - line_start + 1))
        newlines = m.group().count("\n")
        if newlines:
            line += newlines
            line_start = pos + m.group().rindex("\n") + 1
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens, self.i = tokens, 0

    def peek(self, offset: int = 0) -> Token | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def error(self, message: str) -> AlloySyntaxError:
        token = self.peek()
        where = f"{token.line}:{token.column}" if token else "end of file"
        return AlloySyntaxError(f"{where}: {message}")

    def take(self, text: str | None = None, kind: str | None = None) -> Token:
        token = self.peek()
        if token is None or (text and token.text != text) or (kind and token.kind != kind):
            found = token.text if token else "end of file"
            raise self.error(f"expected {text or kind}, found {found!r}")
        self.i += 1
        return token

    def body(self, closing: str | None) -> list[Attribute | Block]:
        items: list[Attribute | Block] = []
        while (token := self.peek()) is not None and token.text != closing:
            name = self.take(kind="ident").text
            if self.peek() is not None and self.peek().text == "=":  # type: ignore[union-attr]
                self.take("=")
                items.append(Attribute(name, self.expression()))
                continue
            while self.peek() is not None and self.peek().text == ".":  # type: ignore[union-attr]
                self.take(".")
                name += "." + self.take(kind="ident").text
            label = None
            if self.peek() is not None and self.peek().kind == "string":  # type: ignore[union-attr]
                label = _unquote(self.take(kind="string").text)
            self.take("{")
            items.append(Block(name, label, self.body("}")))
            self.take("}")
        if closing is None and self.peek() is not None:
            raise self.error("unexpected token")
        return items

    def expression(self, min_precedence: int = 1) -> Any:
        left = self.unary()
        while (token := self.peek()) is not None and _BINARY.get(token.text, 0) >= min_precedence:
            self.take()
            left = (token.text, left, self.expression(_BINARY[token.text] + 1))
        return left

    def unary(self) -> Any:
        token = self.peek()
        if token is not None and token.text in ("!", "-"):
            self.take()
            return (token.text, self.unary())
        return self.postfix(self.primary())

    def primary(self) -> Any:
        token = self.peek()
        if token is None:
            raise self.error("expected an expression")
        if token.kind == "string":
            return _unquote(self.take().text)
        if token.kind == "raw":
            return self.take().text[1:-1]
        if token.kind == "number":
            text = self.take().text
            return float(text) if any(c in text for c in ".eE") else int(text)
        if token.kind == "ident":
            word = self.take().text
            if word in ("true", "false"):
                return word == "true"
            if word == "null":
                return None
            return Reference(word)
        if token.text == "(":
            self.take("(")
            value = self.expression()
            self.take(")")
            return value
        if token.text == "[":
            self.take("[")
            items = []
            while self.peek() is not None and self.peek().text != "]":  # type: ignore[union-attr]
                items.append(self.expression())
                if self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                    self.take(",")
                else:
                    break
            self.take("]")
            return items
        if token.text == "{":
            self.take("{")
            obj = {}
            while self.peek() is not None and self.peek().text != "}":  # type: ignore[union-attr]
                key = self.take().text
                key = _unquote(key) if key.startswith('"') else key
                self.take("=")
                obj[key] = self.expression()
                if self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                    self.take(",")
                else:
                    break
            self.take("}")
            return obj
        raise self.error(f"expected an expression, found {token.text!r}")

    def postfix(self, value: Any) -> Any:
        while (token := self.peek()) is not None:
            if token.text == "." and isinstance(value, Reference):
                self.take(".")
                value = Reference(value.path + "." + self.take(kind="ident").text)
            elif token.text == "(" and isinstance(value, Reference):
                self.take("(")
                arguments = []
                while self.peek() is not None and self.peek().text != ")":  # type: ignore[union-attr]
                    arguments.append(self.expression())
                    if self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                        self.take(",")
                    else:
                        break
                self.take(")")
                value = Call(value.path, tuple(arguments))
            elif token.text == "[":
                self.take("[")
                value = ("index", value, self.expression())
                self.take("]")
            else:
                return value
        return value


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPE = re.compile(
    r"\\(?:([abfnrtv\\\"])|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|([0-7]{3}))|\\"
)


def _unquote(text: str) -> str:
    """A double-quoted string's value; Go's escapes, as Alloy's are."""

    def unescape(m: re.Match[str]) -> str:
        simple, *codes = m.groups()
        if simple:
            return _ESCAPES.get(simple, simple)
        for code, base in zip(codes, (16, 16, 16, 8), strict=True):
            if code:
                return chr(int(code, base))
        raise AlloySyntaxError(f"bad escape in {text}")

    return _ESCAPE.sub(unescape, text[1:-1])


def parse(text: str) -> list[Attribute | Block]:
    """The top-level statements of an Alloy file; AlloySyntaxError with line:column if invalid."""
    return _Parser(tokenize(text)).body(None)


def references(value: Any) -> list[str]:
    """Every reference path inside an expression (function names excluded)."""
    if isinstance(value, Reference):
        return [value.path]
    if isinstance(value, Call):
        return [r for a in value.arguments for r in references(a)]
    if isinstance(value, list | tuple):
        return [r for v in value for r in references(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in references(v)]
    return []


def walk(items: list[Attribute | Block]) -> list[Attribute]:
    """Every attribute, nested blocks included."""
    out: list[Attribute] = []
    for item in items:
        out += walk(item.body) if isinstance(item, Block) else [item]
    return out
