FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

# Installed as a package (migrations included), then run from a directory that holds no
# source: every process, `runway migrate` too, uses only what the package installed.
COPY pyproject.toml README.md celeryconfig.py /tmp/runway/
COPY app /tmp/runway/app
COPY api /tmp/runway/api
COPY tasks /tmp/runway/tasks
COPY migrations /tmp/runway/migrations
RUN pip install /tmp/runway && rm -rf /tmp/runway && useradd --system --create-home runway
USER runway
WORKDIR /home/runway

EXPOSE 8000
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
