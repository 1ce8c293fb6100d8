"""The demo set-up `make run` ensures: a workspace, an API key and a stream to try things on."""

from __future__ import annotations

from pathlib import Path

from app import db, workspaces
from app.pipelines import registry
from app.streams import service as streams
from app.streams import store as streams_store

WORKSPACE = "demo"
STREAM = "demo digest"
KEY_FILE = Path(".runway-demo-key")
SCHEDULE = {"cron": "*/15 * * * *", "timezone": "UTC"}


def _key() -> str:
    """The key saved by an earlier run if it still works, else a new one (saved for next time)."""
    if KEY_FILE.exists():
        key = KEY_FILE.read_text().strip()
        with db.unit_of_work() as conn:
            if workspaces.workspace_for_key(conn, key) is not None:
                return key
    key = workspaces.create_key(WORKSPACE, "demo")[1]
    KEY_FILE.write_text(key + "\n")
    KEY_FILE.chmod(0o600)
    return key


def _stream_id(key: str) -> str:
    with db.unit_of_work() as conn:
        workspace_id = workspaces.workspace_for_key(conn, key)
        assert workspace_id is not None
        existing = streams_store.find_by_name(conn, workspace_id, STREAM)
    if existing is not None:
        return str(existing.id)
    fields = {
        "name": STREAM,
        "pipeline": "demo.report",
        "params": {"query": "microbiome"},
        "schedule_config": SCHEDULE,
    }
    return str(streams.create(workspace_id, fields).row.id)


def ensure() -> None:
    registry.load()
    key = _key()
    stream_id = _stream_id(key)
    print(f"API key:   {key}")
    print("console:   http://localhost:8000/ui  (sign in with the key)")
    print(f"stream id: {stream_id}  (demo.report, every 15 minutes)")
    print("try:")
    print(
        f"  curl -s -X POST localhost:8000/runs -H 'Authorization: Bearer {key}' "
        f"-H 'Content-Type: application/json' -d '{{\"stream_id\": \"{stream_id}\"}}'"
    )
