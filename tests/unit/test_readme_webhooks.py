"""The README's signature check, run as written against the signatures Runway sends."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.webhooks import signing

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def verify() -> Callable[..., bool]:
    text = README.read_text()
    found = re.search(r"<!-- verify-signature -->\n```python\n(.*?)```", text, re.DOTALL)
    assert found is not None, "README lost its signature check"
    assert len(found.group(1).strip().splitlines()) <= 20
    namespace: dict[str, Any] = {}
    exec(compile(found.group(1), "README.md", "exec"), namespace)
    function: Callable[..., bool] = namespace["verify"]
    return function


def test_the_readme_accepts_what_runway_signs(verify: Callable[..., bool]) -> None:
    body = b'{"id":"e1","type":"ping","data":{}}'
    header = signing.signature("whsec_x", body, int(time.time()))
    assert verify("whsec_x", body, header)


@pytest.mark.parametrize(
    ("secret", "body", "age"),
    [("whsec_other", b"{}", 0), ("whsec_x", b"{} ", 0), ("whsec_x", b"{}", 600)],
    ids=["wrong secret", "changed body", "old signature"],
)
def test_the_readme_refuses_the_rest(
    verify: Callable[..., bool], secret: str, body: bytes, age: int
) -> None:
    header = signing.signature("whsec_x", b"{}", int(time.time()) - age)
    assert not verify(secret, body, header)


def test_the_readme_refuses_a_malformed_header(verify: Callable[..., bool]) -> None:
    assert not verify("whsec_x", b"{}", "v1=abc")
    assert not verify("whsec_x", b"{}", "t=abc,v1=abc")
    assert not verify("whsec_x", b"{}", "")
