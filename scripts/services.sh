#!/usr/bin/env bash
# Make sure Postgres and Redis answer at the configured URLs. On this machine, start a local
# one that is down; otherwise say in one line what is missing and how to fix it.
set -euo pipefail

py=${PYTHON:-.venv/bin/python}

reachable() { "$py" -m scripts.reachable "$1" >/dev/null 2>&1; }

wait_for() {
  for _ in $(seq 1 30); do reachable "$1" && return 0; sleep 0.5; done
  return 1
}

if ! reachable postgres; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && ls /etc/postgresql >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start >/dev/null 2>&1 || true
  fi
  wait_for postgres || {
    echo "Postgres is not reachable at DATABASE_URL ($("$py" -m scripts.reachable postgres --url)): start it, e.g. 'pg_ctlcluster 15 main start', or set DATABASE_URL" >&2
    exit 1
  }
fi

if ! reachable redis; then
  if command -v redis-server >/dev/null 2>&1; then
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null 2>&1 || true
  fi
  wait_for redis || {
    echo "Redis is not reachable at REDIS_URL ($("$py" -m scripts.reachable redis --url)): start it, e.g. 'redis-server --daemonize yes', or set REDIS_URL" >&2
    exit 1
  }
fi
