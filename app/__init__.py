"""Runway: research-stream pipelines on Celery, with Postgres as the system of record."""

from app.celery import app

__all__ = ["app"]
