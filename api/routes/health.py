"""/health: whether the database and the broker answer."""

from __future__ import annotations

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.schemas import Health
from app import health

router = APIRouter(tags=["operations"])

# Threads of its own: requests stuck on Postgres, holding every thread of the shared pool,
# never keep /health from answering (it is how they get noticed).
_THREADS = CapacityLimiter(2)


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def get_health() -> JSONResponse:
    report = await to_thread.run_sync(health.check, limiter=_THREADS)
    return JSONResponse(report.as_dict(), status_code=200 if report.ok else 503)
