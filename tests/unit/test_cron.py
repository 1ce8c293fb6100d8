"""Unit tests for app.schedules.cron: parsing, validation messages and DST handling."""

from __future__ import annotations

import itertools
import pickle
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from app.schedules.cron import (
    CronSchedule,
    ScheduleError,
    load_timezone,
    parse_cron,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
KATHMANDU = ZoneInfo("Asia/Kathmandu")
UTC_ZONE = ZoneInfo("UTC")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def fires(expr: str, tz: ZoneInfo, after: datetime, count: int) -> list[datetime]:
    return parse_cron(expr, tz).upcoming(after, count)


# --- plain schedules -----------------------------------------------------------------------


def test_every_minute_is_strictly_after() -> None:
    schedule = parse_cron("* * * * *", UTC_ZONE)
    assert schedule.next_after(utc(2026, 5, 4, 12, 0, 30)) == utc(2026, 5, 4, 12, 1)
    assert schedule.next_after(utc(2026, 5, 4, 12, 1)) == utc(2026, 5, 4, 12, 2)
    assert schedule.next_after(utc(2026, 5, 4, 12, 0, 59, 999999)) == utc(2026, 5, 4, 12, 1)


def test_weekly_monday_in_berlin_follows_local_time_across_dst() -> None:
    # Mondays 06:00 local: CET (UTC+1) until 29 March 2026, CEST (UTC+2) after.
    assert fires("0 6 * * 1", BERLIN, utc(2026, 3, 20), 3) == [
        utc(2026, 3, 23, 5),
        utc(2026, 3, 30, 4),
        utc(2026, 4, 6, 4),
    ]
    schedule = parse_cron("0 6 * * 1", BERLIN)
    assert schedule.next_after(utc(2026, 1, 7, 9)) == utc(2026, 1, 12, 5)
    assert schedule.next_after(utc(2026, 1, 12, 5)) == utc(2026, 1, 19, 5)


def test_kathmandu_quarter_hour_offset() -> None:
    assert fires("0 6 * * *", KATHMANDU, utc(2026, 1, 1), 2) == [
        utc(2026, 1, 1, 0, 15),
        utc(2026, 1, 2, 0, 15),
    ]


def test_results_are_utc_whatever_the_zone_of_after() -> None:
    after = datetime(2026, 6, 1, 12, 7, tzinfo=NEW_YORK)
    result = parse_cron("0 * * * *", BERLIN).next_after(after)
    assert result == utc(2026, 6, 1, 17)
    assert result.tzinfo is UTC


def test_upcoming_is_strictly_increasing_and_exact() -> None:
    # 2026-01-09 is a Friday.
    times = fires("0 9 * * mon-fri", UTC_ZONE, utc(2026, 1, 9, 10), 5)
    assert times == [
        utc(2026, 1, 12, 9),
        utc(2026, 1, 13, 9),
        utc(2026, 1, 14, 9),
        utc(2026, 1, 15, 9),
        utc(2026, 1, 16, 9),
    ]
    assert all(a < b for a, b in itertools.pairwise(times))


def test_upcoming_count_edge_cases() -> None:
    schedule = parse_cron("@hourly", UTC_ZONE)
    assert schedule.upcoming(utc(2026, 1, 1), 0) == []
    with pytest.raises(ValueError, match="negative"):
        schedule.upcoming(utc(2026, 1, 1), -1)


def test_naive_after_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_cron("* * * * *", UTC_ZONE).next_after(datetime(2026, 1, 1))


def test_leap_day_skips_to_next_leap_year() -> None:
    schedule = parse_cron("0 0 29 2 *", UTC_ZONE)
    assert schedule.next_after(utc(2026, 1, 1)) == utc(2028, 2, 29)
    assert schedule.next_after(utc(2028, 2, 29)) == utc(2032, 2, 29)


def test_sunday_as_seven_equals_zero() -> None:
    after = utc(2026, 1, 1)  # a Thursday
    sundays = fires("0 0 * * 0", UTC_ZONE, after, 4)
    assert fires("0 0 * * 7", UTC_ZONE, after, 4) == sundays
    assert fires("0 0 * * sun", UTC_ZONE, after, 4) == sundays
    assert sundays[0] == utc(2026, 1, 4)
    assert {day.isoweekday() for day in sundays} == {7}


def test_range_ending_in_seven_includes_sunday() -> None:
    days = fires("0 0 * * 5-7", UTC_ZONE, utc(2026, 1, 1), 4)
    assert days == [utc(2026, 1, 2), utc(2026, 1, 3), utc(2026, 1, 4), utc(2026, 1, 9)]


def test_names_are_case_insensitive_and_work_in_ranges() -> None:
    assert fires("0 12 1 FEB-mar *", UTC_ZONE, utc(2026, 1, 5), 3) == [
        utc(2026, 2, 1, 12),
        utc(2026, 3, 1, 12),
        utc(2027, 2, 1, 12),
    ]
    assert fires("0 0 * * Sat", UTC_ZONE, utc(2026, 1, 1), 1) == [utc(2026, 1, 3)]


@pytest.mark.parametrize(
    ("expr", "minutes"),
    [
        ("*/20 * * * *", [0, 20, 40]),
        ("5/20 * * * *", [5, 25, 45]),
        ("10-30/10 * * * *", [10, 20, 30]),
        ("1,2,58-59 * * * *", [1, 2, 58, 59]),
        ("*/60 * * * *", [0]),
    ],
)
def test_steps_ranges_and_lists(expr: str, minutes: list[int]) -> None:
    times = fires(expr, UTC_ZONE, utc(2026, 1, 1, 6, 59, 59), len(minutes) + 1)
    assert [t.minute for t in times[:-1]] == minutes
    assert all(t.hour == 7 for t in times[:-1])
    assert times[-1] == utc(2026, 1, 1, 8, minutes[0])


def test_day_of_month_or_day_of_week_when_both_restricted() -> None:
    # Friday the 13th style: any 13th OR any Friday (standard cron).
    assert fires("0 0 13 * 5", UTC_ZONE, utc(2026, 1, 5), 4) == [
        utc(2026, 1, 9),
        utc(2026, 1, 13),
        utc(2026, 1, 16),
        utc(2026, 1, 23),
    ]


def test_full_range_day_of_week_counts_as_star() -> None:
    assert fires("0 0 1 * 0-6", UTC_ZONE, utc(2026, 1, 5), 2) == [utc(2026, 2, 1), utc(2026, 3, 1)]


def test_schedules_differ_per_zone_with_same_expression() -> None:
    after = utc(2026, 1, 1)
    assert parse_cron("0 6 * * *", BERLIN).next_after(after) == utc(2026, 1, 1, 5)
    assert parse_cron("0 6 * * *", NEW_YORK).next_after(after) == utc(2026, 1, 1, 11)


# --- macros --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("macro", "expr"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_macros_match_their_five_field_form(macro: str, expr: str) -> None:
    after = utc(2026, 5, 17, 13, 30)
    assert fires(macro, BERLIN, after, 3) == fires(expr, BERLIN, after, 3)


def test_macro_values() -> None:
    assert parse_cron("@weekly", UTC_ZONE).next_after(utc(2026, 1, 1)) == utc(2026, 1, 4)
    assert parse_cron("@yearly", UTC_ZONE).next_after(utc(2026, 1, 1)) == utc(2027, 1, 1)


@pytest.mark.parametrize("macro", ["@reboot", "@every_5m", "@", "@daily 5"])
def test_unknown_macro_lists_accepted_ones(macro: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_cron(macro, UTC_ZONE)
    assert info.value.field == "cron"
    for name in ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"]:
        assert name in str(info.value)


# --- daylight saving: Europe/Berlin --------------------------------------------------------


def test_berlin_daily_0230_on_spring_forward_day_fires_once_at_gap_end() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30 does not exist.
    assert fires("30 2 * * *", BERLIN, utc(2026, 3, 27, 12), 4) == [
        utc(2026, 3, 28, 1, 30),
        utc(2026, 3, 29, 1, 0),
        utc(2026, 3, 30, 0, 30),
        utc(2026, 3, 31, 0, 30),
    ]


def test_berlin_daily_0230_on_fall_back_day_fires_once_at_first_occurrence() -> None:
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET (01:00 UTC); 02:30 happens twice.
    assert fires("30 2 * * *", BERLIN, utc(2026, 10, 23, 12), 4) == [
        utc(2026, 10, 24, 0, 30),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 26, 1, 30),
        utc(2026, 10, 27, 1, 30),
    ]


def test_berlin_quarter_hourly_across_spring_forward() -> None:
    assert fires("*/15 * * * *", BERLIN, utc(2026, 3, 28, 23, 40), 8) == [
        utc(2026, 3, 28, 23, 45),  # 00:45 CET
        utc(2026, 3, 29, 0, 0),
        utc(2026, 3, 29, 0, 15),
        utc(2026, 3, 29, 0, 30),
        utc(2026, 3, 29, 0, 45),  # 01:45 CET
        utc(2026, 3, 29, 1, 0),  # 02:00-02:45 skipped: one fire at 03:00 CEST
        utc(2026, 3, 29, 1, 15),
        utc(2026, 3, 29, 1, 30),
    ]


def test_berlin_quarter_hourly_across_fall_back() -> None:
    assert fires("*/15 * * * *", BERLIN, utc(2026, 10, 24, 23, 40), 8) == [
        utc(2026, 10, 24, 23, 45),  # 01:45 CEST
        utc(2026, 10, 25, 0, 0),  # 02:00 CEST
        utc(2026, 10, 25, 0, 15),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 0, 45),  # 02:45 CEST; the repeated 02:00-02:45 CET do not fire
        utc(2026, 10, 25, 2, 0),  # 03:00 CET
        utc(2026, 10, 25, 2, 15),
        utc(2026, 10, 25, 2, 30),
    ]


@pytest.mark.parametrize(
    "after",
    [
        utc(2026, 10, 25, 1, 10),
        datetime(2026, 10, 25, 2, 10, tzinfo=BERLIN, fold=1),
        utc(2026, 10, 25, 1, 0),
        utc(2026, 10, 25, 1, 59, 59),
    ],
)
def test_after_inside_the_repeated_hour(after: datetime) -> None:
    assert parse_cron("*/15 * * * *", BERLIN).next_after(after) == utc(2026, 10, 25, 2)
    assert parse_cron("* * * * *", BERLIN).next_after(after) == utc(2026, 10, 25, 2)
    assert parse_cron("30 2 * * *", BERLIN).next_after(after) == utc(2026, 10, 26, 1, 30)
    assert parse_cron("0 3 * * *", BERLIN).next_after(after) == utc(2026, 10, 25, 2)


def test_after_in_first_pass_of_the_ambiguous_hour() -> None:
    after = datetime(2026, 10, 25, 2, 10, tzinfo=BERLIN, fold=0)  # 00:10 UTC
    assert parse_cron("*/15 * * * *", BERLIN).next_after(after) == utc(2026, 10, 25, 0, 15)
    assert parse_cron("30 2 * * *", BERLIN).next_after(after) == utc(2026, 10, 25, 0, 30)
    assert parse_cron("5 2 * * *", BERLIN).next_after(after) == utc(2026, 10, 26, 1, 5)


def test_after_at_the_spring_forward_instant() -> None:
    schedule = parse_cron("*/15 * * * *", BERLIN)
    assert schedule.next_after(utc(2026, 3, 29, 0, 59)) == utc(2026, 3, 29, 1)
    assert schedule.next_after(utc(2026, 3, 29, 1)) == utc(2026, 3, 29, 1, 15)
    assert parse_cron("30 2 * * *", BERLIN).next_after(utc(2026, 3, 29, 1)) == utc(
        2026, 3, 30, 0, 30
    )


# --- daylight saving: America/New_York -----------------------------------------------------


def test_new_york_spring_forward() -> None:
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
    assert fires("30 2 * * *", NEW_YORK, utc(2026, 3, 6, 12), 3) == [
        utc(2026, 3, 7, 7, 30),
        utc(2026, 3, 8, 7, 0),
        utc(2026, 3, 9, 6, 30),
    ]
    assert fires("0 * * * *", NEW_YORK, utc(2026, 3, 8, 5, 30), 4) == [
        utc(2026, 3, 8, 6),  # 01:00 EST
        utc(2026, 3, 8, 7),  # 02:00 missing, 03:00 EDT: one fire
        utc(2026, 3, 8, 8),
        utc(2026, 3, 8, 9),
    ]


def test_new_york_fall_back() -> None:
    # 2026-11-01: 02:00 EDT falls back to 01:00 EST (06:00 UTC); 01:xx happens twice.
    assert fires("30 1 * * *", NEW_YORK, utc(2026, 10, 30, 12), 3) == [
        utc(2026, 10, 31, 5, 30),
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 2, 6, 30),
    ]
    assert fires("0 * * * *", NEW_YORK, utc(2026, 11, 1, 3, 30), 4) == [
        utc(2026, 11, 1, 4),  # 00:00 EDT
        utc(2026, 11, 1, 5),  # 01:00 EDT; 01:00 EST (06:00 UTC) does not fire
        utc(2026, 11, 1, 7),  # 02:00 EST
        utc(2026, 11, 1, 8),
    ]


# --- cross-check against a minute-by-minute reference --------------------------------------


def reference_fires(expr: str, tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Instant-by-instant statement of the DST rule, independent of the implementation.

    Only minute and hour may be restricted in ``expr``; croniter expands them.
    """
    expanded = croniter(expr, datetime(2000, 1, 1)).expanded
    assert expanded[2:] == [["*"], ["*"], ["*"]]
    minutes, hours = (
        set(range(60)) if values == ["*"] else {int(str(v)) for v in values}
        for values in expanded[:2]
    )

    def matches(wall: datetime) -> bool:
        return wall.minute in minutes and wall.hour in hours

    out: list[datetime] = []
    moment = start
    while moment <= end:
        local = moment.astimezone(tz)
        wall = local.replace(tzinfo=None)
        fire = local.fold == 0 and matches(wall)
        previous = (moment - timedelta(seconds=1)).astimezone(tz)
        gap = (local.utcoffset() or timedelta()) - (previous.utcoffset() or timedelta())
        skipped = wall - gap
        while not fire and skipped < wall:
            fire = matches(skipped)
            skipped += timedelta(minutes=1)
        if fire:
            out.append(moment)
        moment += timedelta(minutes=1)
    return out


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        ("Europe/Berlin", utc(2026, 3, 28, 21)),
        ("Europe/Berlin", utc(2026, 10, 24, 21)),
        ("America/New_York", utc(2026, 3, 8, 3)),
        ("America/New_York", utc(2026, 11, 1, 2)),
        ("Australia/Lord_Howe", utc(2026, 4, 4, 12)),  # 30-minute fall back
        ("Australia/Lord_Howe", utc(2026, 10, 3, 12)),  # 30-minute spring forward
        ("America/Santiago", utc(2026, 4, 4, 23)),  # transitions at local midnight
        ("America/Santiago", utc(2026, 9, 6, 0)),
        ("Asia/Kathmandu", utc(1985, 12, 31, 15)),  # +05:30 -> +05:45
    ],
)
@pytest.mark.parametrize(
    "expr", ["*/15 * * * *", "30 2 * * *", "0 * * * *", "*/7 0-3 * * *", "10,40 23,0,1 * * *"]
)
def test_matches_reference_around_transitions(zone: str, start: datetime, expr: str) -> None:
    tz = ZoneInfo(zone)
    end = start + timedelta(hours=8)
    expected = reference_fires(expr, tz, start - timedelta(days=1), end + timedelta(days=1))
    schedule = parse_cron(expr, tz)
    after = start
    while after <= end:
        assert schedule.next_after(after) == next(t for t in expected if t > after), after
        after += timedelta(minutes=7, seconds=30)
    ahead = [t for t in expected if t > start][:10]
    assert len(ahead) >= 2
    assert schedule.upcoming(start, len(ahead)) == ahead


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "start", "needles"),
    [
        ("1 2 3", "expected 5 fields (minute hour day-of-month month day-of-week), got 3", []),
        ("* * * * * *", "expected 5 fields", ["got 6", "seconds"]),
        ("0 25 * * *", "hour field: 25 is out of range 0-23", []),
        ("60 * * * *", "minute field: 60 is out of range 0-59", []),
        ("0 0 0 * *", "day-of-month field: 0 is out of range 1-31", []),
        ("0 0 32 * *", "day-of-month field: 32 is out of range 1-31", []),
        ("0 0 * 13 *", "month field: 13 is out of range 1-12", []),
        ("0 0 * * 8", "day-of-week field: 8 is out of range 0-7", []),
        ("a * * * *", "minute field: 'a' is not a number", ["0-59"]),
        ("0 0 * foo *", "month field: 'foo' is not a number or a month name (jan-dec)", ["1-12"]),
        (
            "0 0 * * fooday",
            "day-of-week field: 'fooday' is not a number or a day name (sun-sat)",
            ["0-7"],
        ),
        ("0 0 * */0 *", "month field: step must be a positive number, got '*/0'", ["1-12"]),
        ("0 */x * * *", "hour field: step must be a positive number, got '*/x'", ["0-23"]),
        ("0 0 * * mon-fri/0", "day-of-week field: step must be a positive number", ["0-7"]),
        ("*/90 * * * *", "minute field: step 90", ["0-59"]),
        ("0 5-2 * * *", "hour field: range 5-2 is backwards", ["0-23", "5-23,0-2"]),
        ("0 0 * * sat-sun", "day-of-week field: range sat-sun is backwards", ["0-7"]),
        ("1,,2 * * * *", "minute field: empty list item", ["0-59"]),
        ("-5 * * * *", "minute field: '-5' is not a valid range", ["0-59"]),
        ("1-2-3 * * * *", "minute field: '1-2-3' is not a valid range", ["0-59"]),
        ("0 0 L * *", "day-of-month field: 'L' is not a number", ["1-31"]),
        ("0 0 ? * *", "day-of-month field: '?' is not a number", ["1-31"]),
        ("0 0 * * 1#2", "day-of-week field: '1#2' is not a number", ["0-7"]),
        ("\uff15 * * * *", "minute field: '\uff15' is not a number", ["0-59"]),
    ],
)
def test_validation_messages(expr: str, start: str, needles: list[str]) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_cron(expr, UTC_ZONE)
    error = info.value
    assert error.field == "cron"
    assert str(error) == error.message
    assert error.message.startswith(start), error.message
    for needle in needles:
        assert needle in error.message


@pytest.mark.parametrize("expr", ["", "   ", "\t\n"])
def test_empty_expression(expr: str) -> None:
    with pytest.raises(ScheduleError, match="empty") as info:
        parse_cron(expr, UTC_ZONE)
    assert info.value.field == "cron"
    assert "minute hour day-of-month month day-of-week" in info.value.message


def test_length_limit() -> None:
    accepted = "00" + ",0" * 95 + " * * * *"
    assert len(accepted) == 200
    assert parse_cron(accepted, UTC_ZONE).next_after(utc(2026, 1, 1)) == utc(2026, 1, 1, 1)
    with pytest.raises(ScheduleError, match="201 characters") as info:
        parse_cron("0" + accepted, UTC_ZONE)
    assert info.value.field == "cron"


@pytest.mark.parametrize(
    "expr", ["0 0 31 2 *", "0 0 30 2 *", "0 0 30,31 feb *", "0 0 31 4,6,9,11 *"]
)
def test_expression_that_never_fires(expr: str) -> None:
    with pytest.raises(ScheduleError, match="never fires") as info:
        parse_cron(expr, UTC_ZONE)
    assert info.value.field == "cron"


def test_impossible_day_with_weekday_still_fires() -> None:
    # Day-of-month OR day-of-week: Mondays in February.
    assert parse_cron("0 0 31 2 1", UTC_ZONE).next_after(utc(2026, 1, 1)) == utc(2026, 2, 2)


def test_direct_construction_validates() -> None:
    with pytest.raises(ScheduleError, match="hour field"):
        CronSchedule("0 24 * * *", UTC_ZONE)


def test_expr_keeps_user_text_with_whitespace_collapsed() -> None:
    schedule = parse_cron("  0   6 * *\t1 ", BERLIN)
    assert schedule.expr == "0 6 * * 1"
    assert schedule == parse_cron("0 6 * * 1", BERLIN)
    assert parse_cron("@daily", BERLIN).expr == "@daily"


def test_schedule_error_is_value_error_and_pickles() -> None:
    error = ScheduleError("cron", "hour field: 25 is out of range 0-23")
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.field, copy.message, str(copy)) == (error.field, error.message, str(error))


# --- time zones ----------------------------------------------------------------------------


def test_load_known_timezones() -> None:
    assert load_timezone("Europe/Berlin") == BERLIN
    assert load_timezone("UTC").key == "UTC"
    assert load_timezone(" Asia/Kathmandu ").key == "Asia/Kathmandu"


def test_unknown_timezone_message() -> None:
    with pytest.raises(ScheduleError) as info:
        load_timezone("Mars/Olympus")
    assert info.value.field == "timezone"
    assert info.value.message.startswith("unknown time zone 'Mars/Olympus'")


@pytest.mark.parametrize(
    "name", ["../etc", "../etc/passwd", "/etc/localtime", "localtime", "Europe", "Europe/../UTC"]
)
def test_paths_and_non_zones_are_rejected(name: str) -> None:
    with pytest.raises(ScheduleError, match="unknown time zone") as info:
        load_timezone(name)
    assert info.value.field == "timezone"


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_timezone(name: str) -> None:
    with pytest.raises(ScheduleError, match="time zone") as info:
        load_timezone(name)
    assert info.value.field == "timezone"


def test_wrong_case_timezone_suggests_the_real_name() -> None:
    with pytest.raises(ScheduleError, match="did you mean 'Europe/Berlin'"):
        load_timezone("europe/berlin")


# --- speed ---------------------------------------------------------------------------------


def test_next_after_is_fast_even_for_rare_schedules() -> None:
    rare = parse_cron("0 0 29 2 *", BERLIN)
    busy = parse_cron("* * * * *", BERLIN)
    began = time.perf_counter()
    for minute in range(200):
        after = utc(2026, 10, 25, 0, 30) + timedelta(minutes=minute)
        rare.next_after(after)
        busy.next_after(after)
    assert time.perf_counter() - began < 2.0  # 400 calls; about 0.1 ms each
