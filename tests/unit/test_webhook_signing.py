"""Webhook signatures: what verify() accepts and, above all, what it refuses."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from app.webhooks.signing import new_secret, signature, verify

SECRET = "whsec_test"
BODY = b'{"event": "run.succeeded", "run_id": 7}'
NOW = 1_700_000_000


def test_new_secrets_are_prefixed_and_distinct() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_")
    assert len(first) > 40
    assert first != second


def test_the_header_is_a_timestamp_and_an_hmac_of_timestamp_and_body() -> None:
    digest = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, BODY, NOW) == f"t={NOW},v1={digest}"


def test_a_signature_verifies() -> None:
    assert verify(SECRET, BODY, signature(SECRET, BODY, NOW), now=NOW + 10)


def test_a_changed_body_does_not_verify() -> None:
    header = signature(SECRET, BODY, NOW)
    assert not verify(SECRET, BODY.replace(b"7", b"8"), header, now=NOW)
    assert not verify(SECRET, BODY + b" ", header, now=NOW)


def test_a_changed_timestamp_does_not_verify() -> None:
    digest = signature(SECRET, BODY, NOW).partition(",")[2]
    assert not verify(SECRET, BODY, f"t={NOW + 1},{digest}", now=NOW)


def test_another_secret_does_not_verify() -> None:
    assert not verify("whsec_other", BODY, signature(SECRET, BODY, NOW), now=NOW)


@pytest.mark.parametrize("age", [301, -301, 10_000])
def test_a_timestamp_out_of_tolerance_does_not_verify(age: int) -> None:
    header = signature(SECRET, BODY, NOW - age)
    assert not verify(SECRET, BODY, header, now=NOW)
    assert verify(SECRET, BODY, header, now=NOW, tolerance_seconds=abs(age))


def test_any_one_of_several_v1_signatures_is_enough() -> None:
    good = signature(SECRET, BODY, NOW).partition(",")[2]
    header = f"t={NOW},v1={'0' * 64},{good},v0=ignored,extra"
    assert verify(SECRET, BODY, header, now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        "",
        ",,,",
        "garbage",
        "t=,v1=abc",
        f"t={NOW}",
        "v1=" + "0" * 64,
        f"t=abc,v1={'0' * 64}",
        f"t=-{NOW},v1={'0' * 64}",
        f"t={NOW}.5,v1={'0' * 64}",
        f"t=1{'0' * 40},v1={'0' * 64}",
        f"t=١٢٣,v1={'0' * 64}",
        f"t={NOW},t={NOW},v1={'0' * 64}",
        f"t={NOW},v1=é\udcff",
        f"t={NOW},v1=",
    ],
)
def test_malformed_headers_are_refused_without_raising(header: str) -> None:
    assert verify(SECRET, BODY, header, now=NOW) is False


def test_a_duplicated_timestamp_is_refused_even_when_one_is_right() -> None:
    good = signature(SECRET, BODY, NOW)
    assert not verify(SECRET, BODY, f"t={NOW + 1},{good}", now=NOW)


def test_nan_for_now_refuses() -> None:
    assert not verify(SECRET, BODY, signature(SECRET, BODY, NOW), now=float("nan"))


def test_the_api_offers_exactly_the_events_the_table_takes() -> None:
    from typing import get_args

    from api.webhooks import EventType
    from app.models import WEBHOOK_EVENTS

    assert get_args(EventType) == WEBHOOK_EVENTS
