"""/health: whether the database and the broker answer."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.schemas import Health
from app import health

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def get_health() -> JSONResponse:
    report = health.check()
    return JSONResponse(report.as_dict(), status_code=200 if report.ok else 503)
