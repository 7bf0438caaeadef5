"""The store on PostgreSQL, seen from a service: DATABASE_URL checked at
start (docs/store-postgres.md). A bad URL stops the service with one line
naming DATABASE_URL and never its password, before any database is opened.
A program built without PostgreSQL (the default static build) refuses a
postgres:// URL the same way, naming make PG=1."""
import os

import pytest

from conftest import Service

SECRET = "hunter2-not-logged"


@pytest.mark.parametrize("url, why", [
    (f"mysql://u:{SECRET}@127.0.0.1/db", "must be a postgres:// URL"),
    (f"postgres://u:{SECRET}@127.0.0.1/db?nosuchoption=1", None),
    (f"postgresql://u:{SECRET}%zz@127.0.0.1/db", None),
    ("postgres://u:p@h/" + "d" * 1100, "longer than 1024 bytes"),
])
@pytest.mark.parametrize("service", ["products", "orders"])
def test_bad_database_url_stops_the_service_without_showing_the_password(service, url, why):
    with Service(service, env={"DATABASE_URL": url}, wait_ready=False, check_exit=False) as s:
        assert s.proc.wait(30) == 2
        log = s.read_log()
        lines = [ln for ln in log.splitlines() if ln.strip()]
        assert len(lines) == 1 and "invalid configuration: DATABASE_URL" in lines[0], lines
        # A program without libpq names the remedy; one with it, libpq's reason.
        assert why is None or why in lines[0] or "make PG=1" in lines[0], lines
        assert SECRET not in log and "%zz" not in log
        assert not os.path.exists(os.path.join(s.data_dir, f"{service}.db")), "stopped before opening the database"
