"""Cron schedules for research streams.

A schedule is a five-field cron expression (minute hour day-of-month month
day-of-week) or a macro such as ``@daily``, evaluated in an IANA time zone.
``croniter`` does the field matching; this module validates input with
messages fit for API users and maps local wall-clock matches to instants.

Daylight saving rule: fields match LOCAL wall-clock time in ``tz``, and each
matching wall time becomes one instant:

* a wall time that exists once fires at that instant;
* a wall time that occurs twice (autumn fall-back) fires only at its first
  occurrence, so the repeated hour never fires again, whatever the
  expression (Vixie cron does not re-run jobs in the repeated time);
* a wall time that does not exist (spring-forward gap) fires at the instant
  the gap ends, and all matches inside one gap collapse into that single
  instant (``30 2 * * *`` still runs once that day; ``*/15 * * * *`` fires
  once, at the end of the gap, for the whole skipped hour).

When both day-of-month and day-of-week are restricted, a day matches if
either field matches (standard cron behaviour); a field that covers its
whole range (``0-6``, ``*/1``) counts as ``*``.  Seconds, years and the
Quartz extensions (``L``, ``W``, ``#``, ``?``) are rejected.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo, available_timezones

from croniter import (  # type: ignore[import-untyped,unused-ignore]
    CroniterBadDateError,
    croniter,
)

MAX_EXPR_LENGTH = 200
# Longest gap between matches of a satisfiable expression: Feb 29 across a
# skipped leap year (2096 -> 2104) is eight years.
HORIZON_YEARS = 10
_FIELD_LAYOUT = "minute hour day-of-month month day-of-week"
_PROBE_START = datetime(2000, 1, 1)

MACROS: Mapping[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


class ScheduleError(ValueError):
    """Bad schedule input.

    ``field`` is the schedule_config key at fault ("cron" or "timezone");
    ``str(err)`` is a human message.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type[ScheduleError], tuple[str, str]]:
        return (type(self), (self.field, self.message))


@dataclass(frozen=True)
class _FieldSpec:
    label: str
    low: int
    high: int
    allowed: str
    names: Mapping[str, int] = field(default_factory=dict)
    name_hint: str = ""
    aliases: Mapping[int, int] = field(default_factory=dict)

    @property
    def canonical(self) -> set[int]:
        """Every distinct value the field can take, aliases resolved."""
        return set(range(self.low, self.high + 1)) - set(self.aliases)


_FIELDS = (
    _FieldSpec("minute", 0, 59, "0-59"),
    _FieldSpec("hour", 0, 23, "0-23"),
    _FieldSpec("day-of-month", 1, 31, "1-31"),
    _FieldSpec(
        "month",
        1,
        12,
        "1-12 or jan-dec",
        names={name: i for i, name in enumerate(_MONTH_NAMES, start=1)},
        name_hint="a month name (jan-dec)",
    ),
    _FieldSpec(
        "day-of-week",
        0,
        7,
        "0-7 or sun-sat (0 and 7 are Sunday)",
        names={name: i for i, name in enumerate(_DAY_NAMES)},
        name_hint="a day name (sun-sat)",
        aliases={7: 0},
    ),
)


def _field_error(spec: _FieldSpec, problem: str) -> ScheduleError:
    return ScheduleError("cron", f"{spec.label} field: {problem}")


def _with_allowed(spec: _FieldSpec, problem: str) -> ScheduleError:
    return _field_error(spec, f"{problem}; allowed values: {spec.allowed}")


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones() - {"localtime"})


def load_timezone(name: str) -> ZoneInfo:
    """Return the IANA zone called ``name`` or raise ScheduleError("timezone")."""
    if not isinstance(name, str) or not name.strip():
        raise ScheduleError(
            "timezone", "time zone is missing; use an IANA name such as 'Europe/Berlin'"
        )
    key = name.strip()
    if key not in _zone_names():
        raise ScheduleError("timezone", f"unknown time zone {key!r}{_zone_hint(key)}")
    try:
        return ZoneInfo(key)
    except (ValueError, OSError) as exc:
        raise ScheduleError("timezone", f"unknown time zone {key!r}") from exc


def _zone_hint(key: str) -> str:
    matches = [zone for zone in _zone_names() if zone.lower() == key.lower()]
    if matches:
        return f"; did you mean {min(matches)!r}?"
    return "; use an IANA name such as 'Europe/Berlin' or 'America/New_York'"


def _parse_number(spec: _FieldSpec, text: str) -> int:
    if text.isascii() and text.isdigit():
        value = int(text)
        if not spec.low <= value <= spec.high:
            raise _field_error(spec, f"{value} is out of range {spec.low}-{spec.high}")
        return value
    if text.lower() in spec.names:
        return spec.names[text.lower()]
    what = f"a number or {spec.name_hint}" if spec.names else "a number"
    raise _with_allowed(spec, f"{text!r} is not {what}")


def _parse_step(spec: _FieldSpec, item: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) == 0:
        raise _with_allowed(spec, f"step must be a positive number, got {item!r}")
    step = int(text)
    size = len(spec.canonical)
    if step > size:
        raise _with_allowed(spec, f"step {step} in {item!r} is larger than {size}")
    return step


def _parse_range(spec: _FieldSpec, text: str) -> tuple[int, int]:
    parts = text.split("-")
    if len(parts) != 2 or not all(parts):
        raise _with_allowed(spec, f"{text!r} is not a valid range (write start-end)")
    start, end = (_parse_number(spec, part) for part in parts)
    if start > end:
        raise _with_allowed(
            spec,
            f"range {text} is backwards; to wrap around write two ranges, "
            f"e.g. {start}-{spec.high},{spec.low}-{end}",
        )
    return start, end


def _parse_item(spec: _FieldSpec, item: str) -> range:
    base, slash, step_text = item.partition("/")
    step = _parse_step(spec, item, step_text) if slash else 1
    if base == "*":
        start, end = spec.low, spec.high
    elif "-" in base:
        start, end = _parse_range(spec, base)
    else:
        start = _parse_number(spec, base)
        end = spec.high if slash else start
    return range(start, end + 1, step)


def _parse_field(spec: _FieldSpec, text: str) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise _with_allowed(spec, f"empty list item in {text!r}")
        values.update(_parse_item(spec, item))
    return {spec.aliases.get(value, value) for value in values}


def _render(values: list[set[int]]) -> str:
    """Render parsed fields as plain lists croniter reads unambiguously."""
    return " ".join(
        "*" if got == spec.canonical else ",".join(map(str, sorted(got)))
        for got, spec in zip(values, _FIELDS, strict=True)
    )


def _split(expr: str) -> list[str]:
    if not expr.strip():
        raise ScheduleError(
            "cron",
            f"cron expression is empty; expected 5 fields ({_FIELD_LAYOUT}), "
            "e.g. '0 6 * * 1', or a macro such as @daily",
        )
    text = expr.strip()
    if len(text) > MAX_EXPR_LENGTH:
        raise ScheduleError(
            "cron",
            f"cron expression is {len(text)} characters long; the limit is {MAX_EXPR_LENGTH}",
        )
    if text.startswith("@"):
        text = _expand_macro(text)
    fields = text.split()
    if len(fields) != len(_FIELDS):
        extra = "; seconds and year fields are not supported" if len(fields) > 5 else ""
        raise ScheduleError(
            "cron", f"expected 5 fields ({_FIELD_LAYOUT}), got {len(fields)}{extra}"
        )
    return fields


def _expand_macro(text: str) -> str:
    macro = MACROS.get(text.lower())
    if macro is None:
        raise ScheduleError("cron", f"unknown macro {text!r}; use one of {', '.join(MACROS)}")
    return macro


@functools.lru_cache(maxsize=4096)
def _normalise(expr: str) -> str:
    """Validate ``expr`` and return an equivalent croniter-ready expression."""
    fields = _split(expr)
    cron = _render([_parse_field(s, f) for s, f in zip(_FIELDS, fields, strict=True)])
    try:
        croniter(cron, _PROBE_START, max_years_between_matches=HORIZON_YEARS).get_next(datetime)
    except CroniterBadDateError as exc:
        raise ScheduleError(
            "cron",
            f"cron expression {expr.strip()!r} never fires: no date matches both "
            "the day-of-month and month fields (e.g. 31 in February)",
        ) from exc
    return cron


def _offset(moment: datetime) -> timedelta:
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError("datetime must be timezone-aware")
    return offset


def _transition(lo: datetime, hi: datetime, tz: ZoneInfo) -> datetime:
    """Return the first instant in (lo, hi] whose UTC offset in ``tz`` differs from lo's."""
    before = _offset(lo.astimezone(tz))
    while hi - lo > timedelta(seconds=1):
        mid = lo + timedelta(seconds=(hi - lo).total_seconds() // 2)
        if _offset(mid.astimezone(tz)) == before:
            lo = mid
        else:
            hi = mid
    return hi


def _gap_end(wall: datetime, tz: ZoneInfo) -> datetime:
    """Return the instant that ends the spring-forward gap containing ``wall``."""
    lo = wall - _offset(wall.replace(tzinfo=tz, fold=1))
    hi = wall - _offset(wall.replace(tzinfo=tz, fold=0))
    return _transition(lo.replace(tzinfo=UTC), hi.replace(tzinfo=UTC), tz)


def _start_wall(after: datetime, tz: ZoneInfo) -> datetime:
    """Return a naive wall time; matches at or before it never fire after ``after``.

    The wall-to-instant mapping never goes backwards, so that is ``after``'s own
    wall time, unless ``after`` lies in the repeated hour: then every wall time
    up to the end of the repeat maps to its first occurrence, before ``after``.
    """
    local = after.astimezone(tz)
    if not local.fold:
        return local.replace(tzinfo=None)
    first = local.replace(fold=0)
    shift = _offset(first) - _offset(local)
    utc = after.astimezone(UTC)
    fall_back = _transition(utc - shift, utc, tz)
    repeat_end = (fall_back + _offset(first)).replace(tzinfo=None)
    return repeat_end - timedelta(seconds=1)


def _to_instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """Map a naive local wall time to its fire instant (see module docstring)."""
    instant = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) == wall:
        return instant
    return _gap_end(wall, tz)


@dataclass(frozen=True)
class CronSchedule:
    """A validated cron expression bound to a time zone.

    ``expr`` is the expression as given (use :func:`parse_cron`); construction
    validates it and raises ScheduleError("cron") if it is bad.
    """

    expr: str
    tz: ZoneInfo
    _cron: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.tz, ZoneInfo):
            raise TypeError("tz must be a zoneinfo.ZoneInfo")
        if not isinstance(self.expr, str):
            raise ScheduleError("cron", "cron expression must be text, e.g. '0 6 * * 1'")
        object.__setattr__(self, "_cron", _normalise(self.expr))

    def next_after(self, after: datetime) -> datetime:
        """Return the first fire instant strictly after ``after``, in UTC."""
        instant = next(self._instants(after), None)
        if instant is None:
            raise ScheduleError(
                "cron", f"cron expression {self.expr!r} does not fire in the years after {after}"
            )
        return instant

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        """Return the next ``count`` fire instants after ``after``, in UTC."""
        if count < 0:
            raise ValueError("count must not be negative")
        return list(islice(self._instants(after), count))

    def _instants(self, after: datetime) -> Iterator[datetime]:
        if after.tzinfo is None or after.utcoffset() is None:
            raise ValueError("after must be timezone-aware")
        start = _start_wall(after, self.tz)
        it = croniter(self._cron, start, max_years_between_matches=HORIZON_YEARS)
        walls: Iterator[datetime] = it.all_next(datetime)
        return _fire_instants(walls, self.tz, after.astimezone(UTC))


def _fire_instants(walls: Iterable[datetime], tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Map ascending wall times to strictly increasing instants later than ``after``."""
    last = after
    for wall in walls:
        instant = _to_instant(wall, tz)
        if instant > last:
            last = instant
            yield instant


def parse_cron(expr: str, tz: ZoneInfo) -> CronSchedule:
    """Validate ``expr`` and bind it to ``tz``; raise ScheduleError("cron")."""
    if isinstance(expr, str):
        expr = " ".join(expr.split())
    return CronSchedule(expr, tz)
