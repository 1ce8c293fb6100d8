"""No password of a URL survives what logs and Flower show, whatever shape the URL has."""

from __future__ import annotations

import pytest

from app.flower import masked
from app.logs import MASK, mask


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("redis://:s3cret@h:6379/0", "s3cret"),
        ("redis://user:s3cret@h/0", "s3cret"),
        ("redis://:pa/ss@h/0", "pa/ss"),  # a raw "/" would make a URL parser fail
        ("redis://:p@ss@h:6379/0", "p@ss"),
        ("redis://h/0?password=s3cret&db=1", "s3cret"),
        ("broker redis://:one@a/0 and db postgresql://u:two@b/c", "one"),
        ("broker redis://:one@a/0 and db postgresql://u:two@b/c", "two"),
        ("sentinel://:s3cret;x@h1;sentinel://:other@h2", "s3cret"),
    ],
)
def test_every_password_is_masked(text: str, secret: str) -> None:
    assert secret not in mask(text)
    assert MASK in mask(text)
    assert secret not in str(masked({"nested": [text]}))


def test_text_without_a_password_is_left_alone() -> None:
    for text in ("redis://h:6379/0", "run 42 ended completed", "a://b"):
        assert mask(text) == text
