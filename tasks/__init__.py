"""Celery task functions: thin entry points into app/."""
