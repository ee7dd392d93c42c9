"""Filter patterns: AWS's text and JSON syntaxes, matched as CloudWatch Logs matches them."""

from __future__ import annotations

import json

import pytest

from lamina.telemetry.filter_pattern import InvalidFilterPattern, parse

RECORD = json.dumps({
    "level": "ERROR", "latency": 75, "ratio": 0.5, "ok": False, "gone": None, "ip": "10.0.3.7",
    "user": {"name": "ana", "roles": ["admin", "dev"]}, "items": [{"id": 1}, {"id": 2}],
    "code": "404",
})


def matches(pattern: str, message: str = RECORD) -> bool:
    return parse(pattern).matches(message)


@pytest.mark.parametrize("pattern", ["", "   "])
def test_empty_pattern_matches_everything(pattern: str) -> None:
    assert matches(pattern, "anything at all")
    assert parse(None).matches("")


def test_terms_must_all_match_case_sensitive() -> None:
    assert matches("ERROR timeout", "ERROR: db timeout after 3s")
    assert not matches("ERROR timeout", "ERROR: db refused")
    assert not matches("error", "ERROR: db timeout")
    assert matches("RRO", "ERROR")  # terms match anywhere, not only whole words


def test_quoted_phrase_matches_verbatim_with_escapes() -> None:
    assert matches('"Internal Server Error"', "500 Internal Server Error here")
    assert not matches('"Internal Server Error"', "Internal  Server Error")
    assert matches('"a@b.com"', "mail to a@b.com")
    assert matches(r'"say \"hi\""', 'they say "hi" twice')


def test_optional_terms_any_one_suffices() -> None:
    assert matches("?ERROR ?WARN", "WARN disk 91%")
    assert matches("?ERROR ?WARN", "ERROR disk")
    assert not matches("?ERROR ?WARN", "INFO disk")
    assert matches('?"bad thing" ?WARN', "a bad thing")


def test_exclusions() -> None:
    assert matches("ERROR -Exiting", "ERROR: retrying")
    assert not matches("ERROR -Exiting", "ERROR: Exiting now")
    assert not matches('ERROR -"shutting down"', "ERROR shutting down")
    assert matches("-DEBUG", "INFO ok")
    assert not matches("-DEBUG", "DEBUG noise")


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ('{ $.level = "ERROR" }', True),
        ('{ $.level = "error" }', False),
        ("{ $.level = ERROR }", True),
        ('{ $.level != "ERROR" }', False),
        ('{ $.level = "ERR*" }', True),
        ('{ $.level = "*RO*" }', True),
        ("{ $.ip = 10.0.* }", True),
        ("{ $.ip != 10.1.* }", True),
        ('{ $.user.name = "ana" }', True),
        ('{ $.user.roles[1] = "dev" }', True),
        ('{ $.user.roles[5] = "dev" }', False),
        ("{ $.items[1].id = 2 }", True),
        ("{ $.latency > 50 }", True),
        ("{ $.latency >= 75 }", True),
        ("{ $.latency < 75 }", False),
        ("{ $.latency <= 75.0 }", True),
        ("{ $.latency = 75 }", True),
        ("{ $.latency != 75 }", False),
        ("{ $.ratio = 0.5 }", True),
        ("{ $.ratio > 5e-1 }", False),
        ("{ $.level > 5 }", False),  # numbers compare only with numbers
        ("{ $.code = 404 }", False),  # "404" is a string, not the number 404
        ('{ $.code = "404" }', True),
        ("{ $.gone IS NULL }", True),
        ("{ $.level IS NULL }", False),
        ("{ $.nothing NOT EXISTS }", True),
        ("{ $.level NOT EXISTS }", False),
        ("{ $.ok IS FALSE }", True),
        ("{ $.ok IS TRUE }", False),
        ("{ $.nothing = * }", False),
        ("{ $.level = * }", True),
        ('{ $.level = "ERROR" && $.latency > 100 }', False),
        ('{ $.level = "ERROR" || $.latency > 100 }', True),
        ('{ ($.level = "INFO" || $.latency > 70) && $.user.name = "ana" }', True),
        ('{ $.level = "INFO" || ($.latency > 70 && $.user.name = "bob") }', False),
        ('{$.level="ERROR"&&$.latency>70}', True),
    ],
)
def test_json_patterns(pattern: str, expected: bool) -> None:
    assert matches(pattern) is expected


def test_json_pattern_never_matches_plain_text() -> None:
    assert not matches('{ $.level = "ERROR" }', 'level = "ERROR"')
    assert not matches("{ $.x NOT EXISTS }", "42")  # a bare JSON scalar is not a record


@pytest.mark.parametrize(
    "pattern",
    [
        "a@b",
        "foo.bar",
        '"unterminated',
        "{ $.level = 1 ",
        '$.level = "x" }',
        "{ }",
        "{ $.level }",
        "{ $.level = }",
        '{ level = "x" }',
        '{ $.level > "x" }',
        '{ $.level IS MAYBE }',
        '{ ($.a = 1 }',
        '{ $.a = 1 && }',
        '{ $.a = 1 $.b = 2 }',
    ],
)
def test_malformed_patterns_are_aws_errors(pattern: str) -> None:
    with pytest.raises(InvalidFilterPattern) as info:
        parse(pattern)
    assert info.value.code == "InvalidParameterException"
    assert info.value.message == "Invalid filter pattern"
    assert info.value.status == 400
