"""The request-body depth scan: finds the too-deep field in raw JSON text, without parsing it."""

from __future__ import annotations

import json
import time

import pytest

from api.limits import too_deep


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (b"[[[]]]", None),
        (b"[[[[]]]]", []),
        (b"[" * 100_000, []),
        (b'{"a": 1, "params": [[[1]]]}', ["params"]),
        (b'{"a": {"b": [1]}, "c": 2}', None),  # 3 levels: at the limit
        (b'{"a": {"b": [[1]]}, "c": 2}', ["a"]),  # 4 levels, under "a"
        (b'{"x": "[[[[[[", "y": "\\"[[[[[["}', None),  # brackets inside strings do not count
        (b'{"x": "\\\\", "p\\u0061rams": [[[[', ["params"]),  # escapes, in values and keys
        (b'{"ok": [], "bad\\udcff": [[[[', []),  # a key that cannot be shown is not named
        (b'{"x": "never closed [[[[[[[', None),  # broken text: the parser reports it
    ],
)
def test_finds_where_json_nests_too_deep(text: bytes, where: list[str] | None) -> None:
    assert too_deep(text, 3) == where


def test_matches_the_real_depth_of_ordinary_json() -> None:
    value = {"a": [{"b": {"c": ["[", "]", "{"]}}], "d": "}}}}"}
    text = json.dumps(value).encode()
    assert too_deep(text, 5) is None
    assert too_deep(text, 4) == ["a"]


@pytest.mark.parametrize(
    "text",
    [
        b"[]" * 500_000,
        json.dumps([["ab"]] * 200_000).encode(),
        b'"' + b'\\"' * 500_000,
    ],
)
def test_a_megabyte_is_scanned_quickly(text: bytes) -> None:
    started = time.perf_counter()
    assert too_deep(text, 65) is None
    assert time.perf_counter() - started < 2
