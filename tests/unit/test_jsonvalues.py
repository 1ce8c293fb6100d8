"""What Postgres can store and the API can serve: the checks every stored JSON value passes."""

from __future__ import annotations

import math
from typing import Any

import pytest

from app.jsonvalues import MAX_JSON_DEPTH, json_depth, storable_json, storable_text


def nested(depth: int, leaf: Any = 1) -> Any:
    """`depth` levels of objects and arrays, alternating, around `leaf`."""
    value = leaf
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


def test_plain_values_are_storable() -> None:
    assert storable_json({"query": "crispr", "n": [1, 2.5, None, True], "ünï": "😀"}) is None
    assert storable_json({"literal": "\\u0000 is how JSON writes NUL"}) is None
    assert storable_json(nested(MAX_JSON_DEPTH)) is None


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"x": math.nan}, "not JSON"),
        ({"x": {1, 2}}, "not JSON"),
        ({"x": "a\x00b"}, "NUL"),
        ({"a\x00": 1}, "NUL"),
        ({"x": "bad \udcff byte"}, "surrogate"),
        ({"x": ["\ud83d"]}, "surrogate"),
        ({"\udcff": 1}, "surrogate"),
        (nested(MAX_JSON_DEPTH + 1), f"nested deeper than {MAX_JSON_DEPTH} levels"),
    ],
)
def test_unstorable_values_are_reported(value: Any, words: str) -> None:
    problem = storable_json(value)
    assert problem is not None
    assert words in problem


def test_depth_is_measured_without_recursion() -> None:
    very_deep = nested(100_000)
    assert json_depth(very_deep, limit=MAX_JSON_DEPTH) == MAX_JSON_DEPTH + 1
    assert storable_json(very_deep) == f"nested deeper than {MAX_JSON_DEPTH} levels"
    assert [json_depth(value) for value in (1, "s", {}, [], {"a": [1]}, [[], [[]]])] == [
        0,
        0,
        1,
        1,
        2,
        3,
    ]


def test_a_cycle_is_too_deep_not_a_hang() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    assert storable_json(loop) is not None


def test_storable_text_removes_nul_and_replaces_lone_surrogates() -> None:
    assert storable_text("a\x00b") == "ab"
    cleaned = storable_text("bad \udcff byte")
    cleaned.encode("utf-8")
    assert cleaned.startswith("bad ") and cleaned.endswith(" byte")
    assert storable_text("fine ünï 😀") == "fine ünï 😀"
