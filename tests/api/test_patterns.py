"""Model patterns keep Java's meaning: ASCII shorthands, Unicode property classes."""

from __future__ import annotations

import pytest

from lamina.api.patterns import compile_java, to_python


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        (r"[\w+=,.@-]+", "role_name+=,.@-1", True),
        (r"[\w+=,.@-]+", "éé", False),             # Java's \w is ASCII: AWS refuses this role name
        (r"\d+", "42", True),
        (r"\d+", "٤٢", False),                      # Arabic-Indic digits are no Java \d
        (r"[^\s]+", "index.handler", True),
        (r"[^\s]+", "a\u2003b", True),              # an em space is not Java \s, so it is allowed
        (r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*", "Prod ünïcode", True),  # property classes stay Unicode
        (r"\\w", "\\w", True),                      # an escaped backslash is left alone
    ],
)  # fmt: skip
def test_java_semantics(pattern: str, value: str, matches: bool) -> None:
    assert (compile_java(pattern).fullmatch(value) is not None) is matches


def test_rewrites_shorthands_inside_and_outside_classes() -> None:
    assert to_python(r"[\w-]+\d") == "[A-Za-z0-9_-]+[0-9]"
