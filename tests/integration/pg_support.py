"""A throwaway PostgreSQL server for tests: Debian's `postgresql` binaries,
initdb into a temporary directory, listening on a free port of 127.0.0.1 and
on a unix socket in that directory, stopped by its PID.

In pytest: the `pg_server` fixture (tests/integration/conftest.py) starts one
server for the session; PgServer.database(name) creates a database and
returns its DATABASE_URL.

For C unit tests (which read DATABASE_URL):
    python3 tests/integration/pg_support.py start DIR [--durable]  # prints DATABASE_URL
    python3 tests/integration/pg_support.py stop DIR

fsync is off unless durable (benchmarks of durable writes want it on).

The postgres server refuses to run as root; as root, the server runs as the
`postgres` system user (the Debian package creates it), which then owns DIR.
The password is random per server and never printed except inside the URL
that `start` prints for the caller.
"""
import glob
import os
import pwd
import secrets
import signal
import subprocess
import sys
import time

from ports import free_port

WAIT = 60.0
USER = "svckit"


def pg_bindir():
    """The newest /usr/lib/postgresql/<version>/bin with initdb."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                  key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0)
    if not dirs:
        raise FileNotFoundError("PostgreSQL server not installed (Debian package postgresql; scripts/deps.sh)")
    return os.path.dirname(dirs[-1])


class PgServer:
    def __init__(self, root, durable=False, netns=None, host="127.0.0.1"):
        """root: an empty directory (or one a previous `start` used).
        netns: the network namespace the server runs in (root only), host:
        the address it listens on (one of that namespace's)."""
        self.durable = durable
        self.netns, self.host = netns, host
        self.root = os.path.abspath(root)
        self.data = os.path.join(self.root, "data")
        self.sock = os.path.join(self.root, "sock")
        self.bindir = pg_bindir()
        self.run_as = "postgres" if os.geteuid() == 0 else None
        self.proc = None
        self.port = None
        self.password = None

    def _run(self, argv, **kw):
        return subprocess.run(argv, user=self.run_as, capture_output=True, text=True, timeout=WAIT, **kw)

    def start(self):
        os.makedirs(self.sock, exist_ok=True)
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            for d in (self.root, self.sock):
                os.chown(d, pw.pw_uid, pw.pw_gid)
        self.password = secrets.token_hex(16)
        pwfile = os.path.join(self.root, "pwfile")
        with open(os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(self.password + "\n")
        if self.run_as:
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        r = self._run([os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", USER, "--pwfile", pwfile,
                       "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale",
                       "--no-sync"])
        os.unlink(pwfile)
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{r.stdout}\n{r.stderr}")
        if self.host != "127.0.0.1":
            # initdb admits loopback only; clients on the host's subnet too.
            with open(os.path.join(self.data, "pg_hba.conf"), "a") as f:
                f.write("host all all samenet scram-sha-256\n")
        self.port = free_port()
        return self._launch()

    def restart(self):
        """Stops the server and starts it again on the same data and port,
        as a restarted or failed-over server looks to its clients."""
        self.stop()
        return self._launch()

    def _launch(self):
        log = open(os.path.join(self.root, "postgres.log"), "a")
        # fsync off: the tests check behaviour, not durability, and share two
        # cores; max_connections: a worker connection per thread per service.
        # In a namespace: `ip netns exec` and setpriv exec in turn, so the
        # PID is the server's and stop()'s signal reaches it.
        prefix, user = [], self.run_as
        if self.netns:
            prefix = ["ip", "netns", "exec", self.netns,
                      "setpriv", f"--reuid={self.run_as}", f"--regid={self.run_as}", "--init-groups"]
            user = None
        # A client cut off (cluster3) holds its session, and the session's
        # advisory locks (the outbox relay's), until the server notices: in
        # seconds, by keepalives and the user timeout, not at the OS's hours.
        if self.netns:
            dead_peer = ["-c", "tcp_keepalives_idle=2", "-c", "tcp_keepalives_interval=1",
                           "-c", "tcp_keepalives_count=2", "-c", "tcp_user_timeout=4000"]
        else:
            dead_peer = []
        self.proc = subprocess.Popen(
            prefix + [os.path.join(self.bindir, "postgres"), *dead_peer, "-D", self.data, "-p", str(self.port), "-h", self.host,
             "-k", self.sock, "-c", f"fsync={'on' if self.durable else 'off'}", "-c", "max_connections=200",
             "-c", "shared_buffers=32MB"],
            user=user, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        pidfile = os.path.join(self.root, "postgres.pid")
        with open(os.open(pidfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(f"{self.proc.pid} {self.port} {self.password}\n")
        deadline = time.monotonic() + WAIT
        while True:
            r = self._run([os.path.join(self.bindir, "pg_isready"), "-h", self.sock, "-p", str(self.port)])
            if r.returncode == 0:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"postgres did not become ready; see {self.root}/postgres.log")
            time.sleep(0.05)
        return self

    def url(self, dbname):
        return f"postgres://{USER}:{self.password}@{self.host}:{self.port}/{dbname}"

    def psql(self, sql, dbname="postgres"):
        r = self._run([os.path.join(self.bindir, "psql"), "-h", self.sock, "-p",
                       str(self.port), "-U", USER, "-d", dbname, "-v", "ON_ERROR_STOP=1", "-Atc", sql])
        if r.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {r.stderr}")
        return r.stdout

    def database(self, name):
        """Creates database `name` (letters, digits, _) and returns its URL."""
        assert name.replace("_", "").isalnum(), name
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self):
        """Fast shutdown (SIGINT) of the server this object started; SIGKILL
        if it does not exit in time."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _stop_by_pidfile(root):
    """`stop` from another process: the PID `start` wrote, if it is still
    that postgres (its /proc cmdline names our data directory)."""
    path = os.path.join(root, "postgres.pid")
    try:
        pid = int(open(path).read().split()[0])
    except (OSError, ValueError, IndexError):
        return
    data = os.path.join(os.path.abspath(root), "data")
    try:
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
        return
    if data.encode() not in cmdline:
        return
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + WAIT
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    if os.path.exists(f"/proc/{pid}"):
        os.kill(pid, signal.SIGKILL)


def main(argv):
    durable = argv[3:] == ["--durable"]
    if len(argv) - durable != 3 or argv[1] not in ("start", "stop"):
        print(f"usage: {argv[0]} start DIR [--durable] | stop DIR", file=sys.stderr)
        return 2
    root = argv[2]
    if argv[1] == "stop":
        _stop_by_pidfile(root)
        return 0
    os.makedirs(root, exist_ok=True)
    srv = PgServer(root, durable).start()
    # The server outlives this script (its own session); `stop` ends it.
    srv.proc = None
    print(srv.database("svckit_test"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
