"""The `runway` CLI: every command against the real database (in process, through
`app.cli.main`), a run it triggers completing on a real worker, and the installed
executable's exit status and stderr."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app import db, workspaces
from app.cli import main
from app.models import research_streams
from tests.fixtures.processes import BIN, REPO
from tests.fixtures.queries import set_run
from tests.fixtures.services import run_row, unpublished_run, wait_for_status

HOURLY = {"interval_seconds": 3600}


def runway(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def ok_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    status, out, err = runway(capsys, *argv, "--json")
    assert (status, err) == (0, ""), err
    return json.loads(out)


def fails(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run a command that must fail: exit 1, nothing on stdout, one line on stderr."""
    status, out, err = runway(capsys, *argv)
    assert (status, out) == (1, ""), (argv, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_keys_create_list_revoke(api: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = runway(capsys, "keys", "create", "--workspace", "acme", "--name", "ops")
    key = out.strip()
    assert (status, err, out) == (0, "", key + "\n") and key.startswith("rw_")
    headers = {"Authorization": f"Bearer {key}"}
    assert api.get("/streams", headers=headers).status_code == 200

    listed = ok_json(capsys, "keys", "list", "--workspace", "acme")
    assert [(item["name"], item["revoked_at"]) for item in listed] == [("ops", None)]
    assert set(listed[0]) == {"id", "name", "created_at", "revoked_at"}
    _, table, _ = runway(capsys, "keys", "list", "--workspace", "acme")
    assert table.split()[:4] == ["ID", "NAME", "CREATED", "REVOKED"]
    assert key not in table and workspaces.hash_key(key) not in table

    revoked = ok_json(capsys, "keys", "revoke", listed[0]["id"])
    assert revoked["id"] == listed[0]["id"] and revoked["revoked_at"] is not None
    assert api.get("/streams", headers=headers).status_code == 401
    again = ok_json(capsys, "keys", "list", "--workspace", "acme")
    assert again[0]["revoked_at"] == revoked["revoked_at"]
    assert "key" in fails(capsys, "keys", "revoke", str(uuid4()))
    assert "workspace nobody not found" in fails(capsys, "keys", "list", "--workspace", "nobody")


def test_workspaces_list_counts_live_runs_and_set_stores_the_cap(
    make_stream: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    workspaces.create_key("globex")
    stream_id = UUID(make_stream()["id"])
    unpublished_run(stream_id)
    unpublished_run(stream_id, status="retrying")
    set_run(unpublished_run(stream_id), status="completed", completed_at=sa.func.now())

    listed = {item["name"]: item for item in ok_json(capsys, "workspaces", "list")}
    counts = {
        name: [item[s] for s in ("pending", "running", "retrying")] for name, item in listed.items()
    }
    assert counts == {"acme": [1, 0, 1], "globex": [0, 0, 0]}
    assert listed["acme"]["max_concurrent_runs"] is None

    assert (
        ok_json(capsys, "workspaces", "set", "acme", "--max-concurrent", "4")["max_concurrent_runs"]
        == 4
    )
    _, table, _ = runway(capsys, "workspaces", "list")
    acme_line = next(line for line in table.splitlines() if line.startswith("acme "))
    assert acme_line.split()[2:6] == ["4", "1", "0", "1"]
    assert (
        ok_json(capsys, "workspaces", "set", "acme", "--max-concurrent", "none")[
            "max_concurrent_runs"
        ]
        is None
    )
    line = fails(capsys, "workspaces", "set", "acme", "--max-concurrent", "0")
    assert line.startswith("runway workspaces set: argument --max-concurrent: '0'")
    assert "workspace nobody not found" in fails(
        capsys, "workspaces", "set", "nobody", "--max-concurrent", "2"
    )


def test_limits_set_list_delete_as_the_api_sees_them(
    api: TestClient, auth: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    made = ok_json(
        capsys, "limits", "set", "openai", "--workspace", "acme", "--max-concurrent", "4"
    )
    assert made == {"key": "openai", "max_concurrent": 4, "rate": None, "running": 0, "waiting": 0}
    kept = ok_json(capsys, "limits", "set", "openai", "--workspace", "acme", "--rate", "60/30")
    assert (kept["max_concurrent"], kept["rate"]) == (4, {"count": 60, "period_seconds": 30.0})
    assert api.get("/limits/openai", headers=auth).json() == kept
    cleared = ok_json(
        capsys, "limits", "set", "openai", "--workspace", "acme", "--max-concurrent", "none"
    )
    assert (cleared["max_concurrent"], cleared["rate"]) == (None, kept["rate"])
    api.put("/limits/db", json={"max_concurrent": 2}, headers=auth)

    listed = ok_json(capsys, "limits", "list", "--workspace", "acme")
    assert [item["key"] for item in listed] == ["db", "openai"]
    _, table, _ = runway(capsys, "limits", "list", "--workspace", "acme")
    assert table.split()[:7] == ["KEY", "MAX", "CONCURRENT", "RATE", "RUNNING", "WAITING", "db"]
    assert "60/30s" in table

    gone = ok_json(capsys, "limits", "delete", "openai", "--workspace", "acme")
    assert gone == {"key": "openai", "deleted": True}
    assert api.get("/limits/openai", headers=auth).status_code == 404
    assert "limit openai not found" in fails(
        capsys, "limits", "delete", "openai", "--workspace", "acme"
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["set", "Bad", "--max-concurrent", "1"], "KEY: a limit key matches"),
        (["set", "k", "--max-concurrent", "0"], "argument --max-concurrent: '0'"),
        (["set", "k", "--max-concurrent", "true"], "argument --max-concurrent: 'true'"),
        (["set", "k", "--rate", "60"], "argument --rate: '60' must be COUNT/SECONDS"),
        (["set", "k", "--rate", "0/60"], "argument --rate: '0/60'"),
        (["set", "k", "--rate", "5/0"], "argument --rate: '5/0'"),
        (["set", "k", "--rate", "5/-1"], "argument --rate: '5/-1'"),
        (["set", "k", "--rate", "5/inf"], "argument --rate: '5/inf'"),
        (["set", "k"], "give --max-concurrent"),
        (["delete", "Bad"], "key: a limit key matches"),
    ],
)
def test_limits_bad_arguments_are_one_line(
    argv: list[str], expected: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    workspaces.create_key("acme")
    line = fails(capsys, "limits", *argv, "--workspace", "acme")
    assert line.startswith(f"runway limits {argv[0]}: ") and expected in line, line
    assert "workspace nobody not found" in fails(capsys, "limits", "list", "--workspace", "nobody")


def test_streams_pause_and_resume_as_patch_does(
    api: TestClient, auth: dict[str, str], make_stream: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = make_stream(schedule_config=HOURLY)
    on_demand = make_stream(priority="high", limit_keys=["openai"])
    listed = ok_json(capsys, "streams", "list", "--workspace", "acme")
    assert [item["id"] for item in listed] == [stream["id"], on_demand["id"]]
    assert [(item["priority"], item["limit_keys"]) for item in listed] == [
        ("normal", []),
        ("high", ["openai"]),
    ]
    _, table, _ = runway(capsys, "streams", "list", "--workspace", "acme")
    assert "every 3600s (UTC)" in table and "active" in table and "on demand" in table

    paused = ok_json(capsys, "streams", "pause", stream["id"])
    assert paused["schedule_config"]["enabled"] is False and paused["next_scheduled_run"] is None
    shown = api.get(f"/streams/{stream['id']}", headers=auth).json()
    assert shown["schedule_config"]["enabled"] is False and shown["next_scheduled_run"] is None

    with db.unit_of_work() as conn:  # as if it had paused itself after failures
        conn.execute(
            sa.update(research_streams)
            .where(research_streams.c.id == UUID(stream["id"]))
            .values(paused_reason="3 scheduled runs failed in a row")
        )
    resumed = ok_json(capsys, "streams", "resume", stream["id"])
    assert resumed["schedule_config"]["enabled"] is True and resumed["paused_reason"] is None
    assert resumed["next_scheduled_run"] is not None
    served = api.get(f"/streams/{stream['id']}", headers=auth).json()
    assert datetime.fromisoformat(served["next_scheduled_run"]) == datetime.fromisoformat(
        resumed["next_scheduled_run"]
    )
    assert served["paused_reason"] is None
    assert "has no schedule" in fails(capsys, "streams", "pause", on_demand["id"])
    assert "not found" in fails(capsys, "streams", "resume", str(uuid4()))


def test_runs_trigger_completes_on_a_worker_then_list_and_show(
    make_stream: Any, worker: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = make_stream("builtin.sleep", params={"seconds": 5})
    run = ok_json(capsys, "runs", "trigger", stream["id"], "--params", '{"seconds": 0.1}')
    assert (run["status"], run["run_type"], run["params"]) == (
        "pending",
        "manual",
        {"seconds": 0.1},
    )

    wait_for_status(run["id"], "completed")
    shown = ok_json(capsys, "runs", "show", run["id"])
    assert (shown["status"], shown["result"]) == ("completed", {"slept_seconds": 0.1})
    assert (shown["priority"], shown["limit_keys"], shown["waiting_for"]) == ("normal", [], None)
    _, record, _ = runway(capsys, "runs", "show", run["id"])
    assert ["status", "completed"] in [line.split() for line in record.splitlines()]

    other = make_stream()
    ok_json(capsys, "runs", "trigger", other["id"])
    everything = ok_json(capsys, "runs", "list", "--workspace", "acme")
    assert len(everything) == 2
    mine = ok_json(capsys, "runs", "list", "--workspace", "acme", "--stream", stream["id"])
    assert [item["id"] for item in mine] == [run["id"]]
    done = ok_json(capsys, "runs", "list", "--workspace", "acme", "--status", "completed")
    assert run["id"] in [item["id"] for item in done]
    assert len(ok_json(capsys, "runs", "list", "--workspace", "acme", "--limit", "1")) == 1
    _, table, _ = runway(capsys, "runs", "list", "--workspace", "acme", "--limit", "1")
    assert table.split()[:8] == [
        "ID",
        "STREAM",
        "STATUS",
        "TYPE",
        "ATTEMPT",
        "CREATED",
        "COMPLETED",
        "ERROR",
    ]


def test_runs_cancel_and_retry(
    make_stream: Any, isolated_queues: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stream_id = UUID(make_stream()["id"])
    waiting = str(unpublished_run(stream_id))
    cancelled = ok_json(capsys, "runs", "cancel", waiting)
    assert (cancelled["status"], cancelled["cancel_requested"]) == ("cancelled", True)
    line = fails(capsys, "runs", "cancel", waiting)
    assert line == f"runway runs cancel: run {waiting} is already cancelled"

    again = ok_json(capsys, "runs", "retry", waiting)
    assert (again["status"], again["retry_of"]) == ("pending", waiting)
    assert run_row(again["id"]).retry_of == UUID(waiting)
    assert "only failed or cancelled" in fails(capsys, "runs", "retry", again["id"])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["runs", "show", "1234"], "runway runs show: argument ID: '1234' is not a run id"),
        (["runs", "show", "00000000-0000-0000-0000-000000000000"], "run 00000000-"),
        (["runs", "list", "--workspace", "acme", "--status", "done"], "invalid choice: 'done'"),
        (["runs", "list", "--workspace", "nobody"], "workspace nobody not found"),
        (["runs", "list", "--workspace", "acme", "--limit", "0"], "--limit: '0' is not"),
        (["runs", "trigger", "STREAM", "--params", "{"], "--params: not valid JSON"),
        (["runs", "trigger", "STREAM", "--params", "[1]"], "--params: must be a JSON object"),
        (["runs", "trigger", "STREAM", "--params", '{"x": NaN}'], "not JSON that can be stored"),
        (["runs", "trigger", "STREAM", "--params", '{"x": "\\u0000"}'], "NUL character"),
        (["runs", "trigger", str(UUID(int=1))], "stream 00000000-0000-0000-0000-000000000001"),
        (["streams", "list", "--workspace", "nobody"], "workspace nobody not found"),
        (["keys", "revoke", "key-1"], "'key-1' is not a key id"),
        (["keys", "create", "--workspace", " "], "workspace: must not be empty"),
        (["keys", "create", "--workspace", "a\tb"], "workspace: no control characters"),
        (["workspaces", "set", "acme", "--max-concurrent", "99999999999"], "from 1 to"),
        (["runs"], "runway runs: the following arguments are required: COMMAND"),
        (["nonsense"], "runway: argument COMMAND: invalid choice: 'nonsense'"),
    ],
)
def test_errors_are_one_line_and_exit_1(
    argv: list[str], expected: str, make_stream: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stream_id = make_stream()["id"]
    argv = [stream_id if part == "STREAM" else part for part in argv]
    assert expected in fails(capsys, *argv)


def test_the_installed_command_exits_1_with_one_line(database_url: str, make_stream: Any) -> None:
    def run(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "runway"), *argv],
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    stream_id = make_stream()["id"]
    listed = run("streams", "list", "--workspace", "acme", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [item["id"] for item in json.loads(listed.stdout)] == [stream_id]

    usage = run("runs", "show", "not-an-id")
    assert (usage.returncode, usage.stdout) == (1, "")
    assert usage.stderr.startswith("runway runs show: argument ID: 'not-an-id' is not a run id")
    assert len(usage.stderr.splitlines()) == 1

    away = "postgresql+psycopg://postgres:s3cret-pw@127.0.0.1:1/runway"
    down = run("runs", "list", "--workspace", "acme", DATABASE_URL=away)
    assert (down.returncode, down.stdout) == (1, "")
    assert down.stderr == (
        "runway runs list: database unavailable at 127.0.0.1:1/runway (DATABASE_URL): "
        "is Postgres running there?\n"
    )
