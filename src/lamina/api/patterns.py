"""The models' constraint patterns, compiled with Java's meaning (AWS validates with Java).

botocore's models carry Java regular expressions. Python's ``regex`` module reads their
``\\p{L}``-style classes, but its ``\\w``, ``\\d`` and ``\\s`` are Unicode-wide where Java's
are ASCII: a role named ``éé`` would pass here and fail on AWS. ``compile_java`` rewrites those
three shorthands to Java's ASCII sets (inside and outside character classes) and leaves every
Unicode property class alone.
"""

from __future__ import annotations

from functools import lru_cache

import regex

_JAVA_SETS = {"w": "A-Za-z0-9_", "d": "0-9", "s": " \\t\\n\\x0B\\f\\r"}


def to_python(pattern: str) -> str:
    """``pattern`` with Java's ASCII meaning of ``\\w``, ``\\d`` and ``\\s`` spelled out."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            escaped = pattern[i + 1]
            if escaped in _JAVA_SETS:
                chars = _JAVA_SETS[escaped]
                out.append(chars if in_class else f"[{chars}]")
            else:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        out.append(char)
        i += 1
    return "".join(out)


@lru_cache(maxsize=1024)
def compile_java(pattern: str) -> regex.Pattern[str]:
    return regex.compile(to_python(pattern), regex.DOTALL)
