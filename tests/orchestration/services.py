"""Real services the orchestration tests run against: a fresh PostgreSQL database per test
(dagster-postgres), and Redis (the Celery broker). Unreachable, a test is skipped, except
when $CI is set: there it fails, so CI cannot go green without them.

PostgreSQL: $POLICYEVAL_TEST_PG_URL (a database where the user may CREATE DATABASE), default
postgresql://postgres@127.0.0.1:5432/postgres. Redis: $POLICYEVAL_TEST_REDIS_URL, default
redis://127.0.0.1:6379/14 (a database number the machine's other users are unlikely to use).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy.engine import make_url

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"


def unavailable(service: str, reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{service} is required in CI: {reason}", pytrace=False)
    pytest.skip(f"{service} not available: {reason}")


def pg_driver():
    """psycopg2, the driver dagster-postgres is written for.

    psycopg 3 is not an alternative: dagster-postgres 0.29.27 sends `NOTIFY channel, $1`, which
    psycopg 3's server-side binding rejects. SQLAlchemy 2.1 maps a bare `postgresql://` URL to
    psycopg 3, so the instance URL names `postgresql+psycopg2` explicitly."""
    try:
        import psycopg2
    except Exception as exc:  # a psycopg2 older than 2.9.5 on Python 3.11 raises SystemError, not ImportError
        unavailable("PostgreSQL", f"psycopg2 does not import ({type(exc).__name__}: {exc}); dagster-postgres needs psycopg2-binary>=2.9.5 on Python 3.11")
    return psycopg2


def _libpq_url(url) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def fresh_pg_database() -> Iterator[dict]:
    """A database of its own, dropped afterwards (its connections ended first)."""
    driver = pg_driver()
    admin = make_url(os.environ.get("POLICYEVAL_TEST_PG_URL", DEFAULT_ADMIN_URL))
    try:
        conn = driver.connect(_libpq_url(admin), connect_timeout=5)
    except Exception as exc:
        unavailable("PostgreSQL", f"cannot connect to {admin.render_as_string(hide_password=True)}: {type(exc).__name__}: {exc}".strip())
    name = f"policyeval_test_{secrets.token_hex(4)}"
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute(f'CREATE DATABASE "{name}"')
    database = admin.set(database=name)
    try:
        yield {
            "name": name,
            "driver": driver,
            "libpq_url": _libpq_url(database),
            "dagster_url": database.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False),
        }
    finally:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.close()
        conn.close()


def sql(pg_database: dict, query: str, params: tuple = ()) -> list[tuple]:
    conn = pg_database["driver"].connect(pg_database["libpq_url"], connect_timeout=5)
    try:
        cur = conn.cursor()
        cur.execute(query, params)
        rows = cur.fetchall()
        cur.close()
        return rows
    finally:
        conn.close()


def redis_url() -> str:
    """The Redis URL to test against, once it answered a PING."""
    url = os.environ.get("POLICYEVAL_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    shown = make_url(url.replace("redis://", "postgresql://", 1)).render_as_string(hide_password=True).replace("postgresql://", "redis://", 1)
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
    except Exception as exc:
        unavailable("Redis", f"cannot reach {shown}: {type(exc).__name__}: {exc}".strip())
    return url
