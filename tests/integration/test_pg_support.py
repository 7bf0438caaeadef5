"""The PostgreSQL fixture itself: a server that answers on the URL it gives,
with the password it set, and refuses a wrong one."""
import subprocess

from pg_support import USER


def test_database_url_connects_with_password_only(pg_server):
    url = pg_server.database("fixture_check")
    psql = pg_server.bindir + "/psql"
    ok = subprocess.run([psql, url, "-Atc", "SELECT current_user, current_database()"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"{USER}|fixture_check"
    bad = url.replace(pg_server.password, "0" * len(pg_server.password))
    no = subprocess.run([psql, bad, "-Atc", "SELECT 1"], capture_output=True, text=True, timeout=60,
                        env={"PGCONNECT_TIMEOUT": "30"})
    assert no.returncode != 0 and "password authentication failed" in no.stderr, no.stderr
