"""CloudWatch Logs filter patterns: parsed once per request, matched against each event.

Two syntaxes, as AWS has them. Text patterns are terms separated by spaces: every plain term
must occur (case-sensitive substring), ``?term`` terms are alternatives of which one must
occur, ``-term`` terms must not occur; terms with anything but letters, digits and ``_`` are
double-quoted. JSON patterns are ``{ ... }``: comparisons of ``$.selector`` values joined by
``&&``/``||`` and parentheses, with ``IS NULL``, ``IS TRUE``/``IS FALSE`` and ``NOT EXISTS``;
string values may hold ``*`` wildcards, numbers compare numerically. Anything else is refused
with AWS's own error, so a pattern that works here works on AWS too.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lamina.errors import ApiError

Matcher = Callable[[str], bool]
JsonTest = Callable[[Any], bool]

_MISSING = object()
_TERM = re.compile(r"[A-Za-z0-9_]+")
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<op>&&|\|\||!=|<=|>=|=|<|>|\(|\))
      | (?P<str>"(?:[^"\\]|\\.)*")
      | (?P<sel>\$(?:\.[A-Za-z0-9_@-]+|\[\d+\])*)
      | (?P<word>[^\s()&|=!<>"]+)
    )""",
    re.VERBOSE,
)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_PATH_PART = re.compile(r"\.([A-Za-z0-9_@-]+)|\[(\d+)\]")


class InvalidFilterPattern(ApiError):
    """AWS answers every malformed pattern with this code and message."""

    code = "InvalidParameterException"
    status = 400
    message_key = "message"

    def __init__(self) -> None:
        super().__init__("Invalid filter pattern")


@dataclass(frozen=True)
class FilterPattern:
    source: str
    _match: Matcher

    def matches(self, message: str) -> bool:
        return self._match(message)


def parse(pattern: str | None) -> FilterPattern:
    """The compiled pattern; an empty or missing pattern matches every event."""
    text = (pattern or "").strip()
    if not text:
        return FilterPattern("", lambda _m: True)
    if text.startswith("{") or text.endswith("}"):
        if not (text.startswith("{") and text.endswith("}")):
            raise InvalidFilterPattern()
        return FilterPattern(text, _json_matcher(_JsonParser(text[1:-1]).parse()))
    if text.startswith("[") or text.startswith("%"):
        raise InvalidFilterPattern()  # space-delimited and regex patterns: not supported here
    return FilterPattern(text, _text_matcher(text))


# -- text patterns ----------------------------------------------------------------------


def _text_matcher(text: str) -> Matcher:
    required: list[str] = []
    optional: list[str] = []
    excluded: list[str] = []
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        kind = text[i] if text[i] in "?-" else ""
        i += len(kind)
        if i < len(text) and text[i] == '"':
            term, i = _quoted(text, i)
        else:
            found = _TERM.match(text, i)
            if found is None:
                raise InvalidFilterPattern()
            term, i = found.group(), found.end()
            if i < len(text) and not text[i].isspace():
                raise InvalidFilterPattern()  # "a@b": AWS wants such terms quoted
        {"?": optional, "-": excluded, "": required}[kind].append(term)

    def match(message: str) -> bool:
        return (
            all(t in message for t in required)
            and (not optional or any(t in message for t in optional))
            and not any(t in message for t in excluded)
        )

    return match


def _quoted(text: str, start: int) -> tuple[str, int]:
    """The unescaped content of the double-quoted string at ``start`` and the index after it."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif ch == '"':
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise InvalidFilterPattern()


# -- JSON patterns ----------------------------------------------------------------------


def _json_matcher(test: JsonTest) -> Matcher:
    def match(message: str) -> bool:
        try:
            doc = json.loads(message)
        except ValueError:
            return False
        return isinstance(doc, (dict, list)) and test(doc)

    return match


class _JsonParser:
    """Recursive descent over the tokens of the pattern between the braces."""

    def __init__(self, body: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(body):
            if body[pos:].strip() == "":
                break
            found = _TOKEN.match(body, pos)
            if found is None or found.end() == pos:
                raise InvalidFilterPattern()
            kind = found.lastgroup or ""
            self.tokens.append((kind, found.group(kind)))
            pos = found.end()
        self.pos = 0

    def parse(self) -> JsonTest:
        test = self._or()
        if self.pos != len(self.tokens):
            raise InvalidFilterPattern()
        return test

    def _peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def _take(self) -> tuple[str, str]:
        token = self._peek()
        if token[0] == "end":
            raise InvalidFilterPattern()
        self.pos += 1
        return token

    def _or(self) -> JsonTest:
        parts = [self._and()]
        while self._peek() == ("op", "||"):
            self.pos += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda doc: any(p(doc) for p in parts))

    def _and(self) -> JsonTest:
        parts = [self._unary()]
        while self._peek() == ("op", "&&"):
            self.pos += 1
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else (lambda doc: all(p(doc) for p in parts))

    def _unary(self) -> JsonTest:
        if self._peek() == ("op", "("):
            self.pos += 1
            inner = self._or()
            if self._take() != ("op", ")"):
                raise InvalidFilterPattern()
            return inner
        kind, selector = self._take()
        if kind != "sel" or selector == "$":
            raise InvalidFilterPattern()
        path = _path(selector)
        kind, word = self._take()
        if kind == "word" and word in ("IS", "NOT"):
            return _keyword_test(path, word, self._take()[1])
        if kind != "op" or word in ("(", ")", "&&", "||"):
            raise InvalidFilterPattern()
        return _comparison(path, word, self._take())


def _path(selector: str) -> tuple[str | int, ...]:
    return tuple(
        key if key else int(index) for key, index in _PATH_PART.findall(selector[1:])
    )


def _resolve(doc: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        in_object = isinstance(step, str) and isinstance(doc, dict) and step in doc
        in_array = isinstance(step, int) and isinstance(doc, list) and step < len(doc)
        if not (in_object or in_array):
            return _MISSING
        doc = doc[step]
    return doc


def _keyword_test(path: tuple[str | int, ...], first: str, second: str) -> JsonTest:
    if (first, second) == ("NOT", "EXISTS"):
        return lambda doc: _resolve(doc, path) is _MISSING
    expected = {"NULL": None, "TRUE": True, "FALSE": False}
    if first != "IS" or second not in expected:
        raise InvalidFilterPattern()
    want = expected[second]
    return lambda doc: _resolve(doc, path) is want


def _comparison(path: tuple[str | int, ...], op: str, value: tuple[str, str]) -> JsonTest:
    kind, raw = value
    if kind == "word" and _NUMBER.fullmatch(raw):
        return _numeric(path, op, float(raw))
    if kind not in ("str", "word") or op not in ("=", "!="):
        raise InvalidFilterPattern()  # strings only compare for (in)equality
    text = json.loads(raw) if kind == "str" else raw
    regex = re.compile(".*".join(re.escape(part) for part in text.split("*")), re.DOTALL)
    negate = op == "!="

    def test(doc: Any) -> bool:
        found = _resolve(doc, path)
        if found is _MISSING or isinstance(found, (dict, list)) or found is None:
            return False
        shown = found if isinstance(found, str) else json.dumps(found)
        return (regex.fullmatch(shown) is not None) != negate

    return test


_NUMERIC_OPS: dict[str, Callable[[float, float], bool]] = {
    "=": lambda a, b: math.isclose(a, b, rel_tol=0.0, abs_tol=1e-9),
    "!=": lambda a, b: not math.isclose(a, b, rel_tol=0.0, abs_tol=1e-9),
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}


def _numeric(path: tuple[str | int, ...], op: str, number: float) -> JsonTest:
    compare = _NUMERIC_OPS[op]

    def test(doc: Any) -> bool:
        found = _resolve(doc, path)
        if isinstance(found, bool) or not isinstance(found, (int, float)):
            return False
        return compare(float(found), number)

    return test
