FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/runway

COPY pyproject.toml README.md alembic.ini celeryconfig.py ./
COPY app ./app
COPY api ./api
COPY tasks ./tasks
COPY migrations ./migrations
COPY scripts ./scripts
RUN pip install . && useradd --system runway
USER runway

EXPOSE 8000
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
