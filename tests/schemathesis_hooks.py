"""What schemathesis needs to know beyond the schema: how to write a cron expression that
Runway accepts (the schema's `format: cron` says it in words; a pattern cannot require a
range's start to come before its end, or a date that exists)."""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

# Per field: the values it takes. Days of the month stop at 28 so every expression fires.
_FIELDS = ((0, 59), (0, 23), (1, 28), (1, 12), (0, 6))
_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


@st.composite
def _field(draw: st.DrawFn, low: int, high: int) -> str:
    start = draw(st.integers(low, high))
    end = draw(st.integers(start, high))
    item = draw(st.sampled_from(["*", str(start), f"{start}-{end}"]))
    if draw(st.booleans()):
        item += f"/{draw(st.integers(1, high - low + 1))}"
    return item


def _expression() -> st.SearchStrategy[str]:
    fields = st.tuples(*(_field(low, high) for low, high in _FIELDS)).map(" ".join)
    return st.one_of(fields, st.sampled_from(_MACROS))


schemathesis.openapi.format("cron", _expression())
