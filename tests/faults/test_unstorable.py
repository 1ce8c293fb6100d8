"""Values Postgres cannot store or the API cannot parse: a clear failure or a 4xx, never a
run stuck running, a 500, or half a write."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from app import db
from app.models import pipeline_executions
from tests.faults.helpers import Scenario
from tests.pipelines import nested

pytestmark = pytest.mark.slow


def test_results_and_errors_that_cannot_be_stored(
    scenario: Scenario, api: TestClient, auth: dict[str, str]
) -> None:
    scenario.spawn("beat")
    scenario.worker(2)
    started = time.monotonic()
    run_ids = [
        *scenario.runs("test.surrogate_result"),
        *scenario.runs("test.surrogate_error"),
        *scenario.runs("test.deep_result", depth=400),
    ]
    settled = scenario.settle(
        "unstorable result (lone surrogate, 400 deep) and error text", run_ids, started, 10
    )

    settled.check()
    for run_id in run_ids:
        found = settled.by_id()[run_id]
        assert (found.status, found.attempt) == ("failed", 1), found.pipeline
        assert found.error, f"{found.pipeline} failed without saying why"
        response = api.get(f"/runs/{run_id}", headers=auth)
        assert response.status_code == 200, f"{found.pipeline}: {response.text[:300]}"
        assert response.json()["status"] == "failed"
    assert [scenario.executions(run_id) for run_id in run_ids] == [1] * 3


def test_params_nested_too_deep_are_refused(
    scenario: Scenario, api: TestClient, auth: dict[str, str]
) -> None:
    stream = scenario.make_stream("test.work")
    started = time.monotonic()
    body = {"stream_id": stream["id"], "params": nested(300)}
    response = api.post("/runs", json=body, headers=auth)
    settled = scenario.settle("POST /runs with params nested 300 deep", [], started, 5)

    settled.check()
    assert response.status_code == 422, response.text[:300]
    with db.unit_of_work() as conn:
        created = conn.execute(sa.select(sa.func.count()).select_from(pipeline_executions))
        assert created.scalar() == 0, "a refused request left a run behind"
