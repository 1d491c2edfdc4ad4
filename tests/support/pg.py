"""A store for a test on either backend: SQLite in the test's folder, or a fresh schema of the
private PostgreSQL server (mynaemu.tools.harness.pgserver, started once per test session and
dropped schema by schema). A missing PostgreSQL fails the test: the suite runs both backends."""
from __future__ import annotations

import contextlib

import pytest

BACKENDS = ["sqlite", "postgresql"]


@contextlib.contextmanager
def fresh_pg_url(*, skip_without: bool = False):
    """The URL of a new, empty schema on the private PostgreSQL server; dropped afterwards. No
    server: the test fails (skip_without=True: it is skipped, for tests that choose so)."""
    pytest.importorskip("psycopg")
    from mynaemu.tools.harness import pgserver

    try:
        server = pgserver.shared_server()
    except pgserver.PgServerError as exc:
        if skip_without:
            pytest.skip(f"no PostgreSQL server: {exc}")
        pytest.fail(f"PostgreSQL for the tests: {exc}")
    url = pgserver.fresh_schema_url(server.url)
    try:
        yield url
    finally:
        pgserver.drop_schema(url)


@contextlib.contextmanager
def open_store(backend: str, tmp_path):
    """An open Store on `backend` ("sqlite": under tmp_path/home; "postgresql": a fresh schema)."""
    from mynaemu.issuance.store import Store

    if backend == "sqlite":
        with Store.open(tmp_path / "home") as store:
            yield store
        return
    with fresh_pg_url() as url, Store(url) as store:
        yield store
