"""Exit 0 if the named service (postgres or redis) answers at its configured URL.

`--url` prints the URL instead (password hidden). Used by scripts/services.sh.
"""

from __future__ import annotations

import sys

import psycopg
import redis
from sqlalchemy.engine import make_url

from app.settings import get_settings


def postgres_url(dbname: str = "postgres") -> str:
    url = make_url(get_settings().database_url).set(drivername="postgresql", database=dbname)
    return url.render_as_string(hide_password=False)


def main(argv: list[str]) -> int:
    service, settings = argv[0], get_settings()
    if "--url" in argv:
        url = settings.database_url if service == "postgres" else settings.redis_url
        print(make_url(url).render_as_string(hide_password=True))
        return 0
    try:
        if service == "postgres":
            psycopg.connect(postgres_url(), connect_timeout=2).close()
        else:
            redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2).ping()
    except (psycopg.Error, redis.RedisError, OSError):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
