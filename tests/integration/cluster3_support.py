"""Three hosts on this machine (issue 12 item 5): three network namespaces
joined by a bridge, each running one node of a 3-node NATS cluster with
JetStream and one instance of every shop service, PostgreSQL in a fourth; any
host can be cut off (its veth's link set down: no clean stop, its processes
go on running, unreachable) and healed.
Used by tests/integration/test_cluster3.py and bench/cluster3.py (`make
demo-cluster`); docs/deploy.md, "Three hosts on one machine", explains it.

Layout (PID = this process's id, so that two runs never clash):

    bridge s<PID>br in the root namespace, 10.A.B.254/24 (A.B from the PID)
    host i (0, 1, 2): namespace s<PID>h<i>, eth0 = 10.A.B.<i+1>/24, its veth
        peer s<PID>v<i> on the bridge; nats-server n<i> (client 4222, routes
        6222, monitoring 8222), JetStream with R3 streams (NATS_JS_REPLICAS=3);
        auth, products, orders, payments (8081-8084)
    hosts 1 and 2: a gateway each (8080)
    the database: namespace s<PID>db, eth0 = 10.A.B.4/24, PostgreSQL
        (pg_support.PgServer), database "shop"; every service's DATABASE_URL
        names it (each service works in a schema of its own)

Where the state lives. In PostgreSQL, the managed database a cloud would
provide, which is never cut here: every host runs one instance of each
service on it, so cutting any host (0 included) loses a NATS node, an instance
of every service and possibly a gateway, never data. The services are those of
the PostgreSQL build (PG=1): build/pg beside build, build/san-pg beside
build/san (pg_build(); missing_pg_build() says why the cluster cannot run).

Ports inside a namespace are fixed (4222, 8080, ...): each namespace has its
own port space, made for this run and removed after it, so nothing else can
hold them. The cluster routes are not authenticated: they cross only the
private bridge. Clients sign in with the shipped per-service users
(deploy/nats-users.conf), NKEY seeds made here as scripts/run.sh makes them.

Everything (processes by PID, namespaces, bridge) is removed by close(), which
__exit__ calls whatever happened; close() is safe to call twice."""
import collections
import http.client
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

from conftest import ROOT, WAIT, terminate, track, wait_until
from shop_support import SECRET, gateway_config, token
from nkey_support import ShopUsers
from pg_support import PgServer, pg_bindir

HOSTS = 3
DB = HOSTS  # the database's namespace is the fourth, index 3 in the addresses
GATEWAY_HOSTS = (1, 2)
SERVICES = ("auth", "products", "orders", "payments")
USERS = ("gateway", "auth", "products", "orders", "payments", "recommendations", "ops")
NATS_SERVER = "/usr/sbin/nats-server"
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
PORTS = {"nats": 4222, "route": 6222, "monitor": 8222, "gateway": 8080, "auth": 8081,
         "products": 8082, "orders": 8083, "payments": 8084, "postgres": 5432}


def run(*argv, check=True):
    r = subprocess.run(argv, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")
    return r


def pg_build(build=None):
    """The PostgreSQL build beside `build` (default SVCKIT_BUILD or build):
    build/pg for build, build/san-pg for build/san."""
    build = build or os.environ.get("SVCKIT_BUILD", "build")
    build = build.rstrip("/")
    return build + "-pg" if os.path.basename(build).startswith("san") else os.path.join(build, "pg")


def missing_pg_build(build=None):
    """Why the services of the PostgreSQL build cannot run (None when they
    can): its binaries are missing, or PostgreSQL is not installed."""
    d = pg_build(build)
    d = d if os.path.isabs(d) else os.path.join(ROOT, d)
    missing = [n for n in ("gateway", *SERVICES) if not os.path.exists(os.path.join(d, "bin", n))]
    if missing:
        return f"{d}/bin lacks {', '.join(missing)} (make PG=1{' SAN=1' if 'san' in d else ''} bins)"
    try:
        pg_bindir()
    except Exception as e:  # pg_bindir says which PostgreSQL it looked for
        return f"PostgreSQL: {e}"
    return None


def cannot_make_namespaces():
    """Why this machine cannot run the cluster (None when it can): no root,
    no `ip`, or the kernel refuses a namespace."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip"):
        return "iproute2's ip is not installed"
    if not os.path.exists(NATS_SERVER):
        return "nats-server is not installed"
    name = f"s{os.getpid()}probe"
    r = run("ip", "netns", "add", name, check=False)
    if r.returncode != 0:
        return f"ip netns add failed: {r.stderr.strip()}"
    run("ip", "netns", "del", name, check=False)
    return None


class Proc:
    """A program in a namespace, its output in a log file."""

    def __init__(self, ns, name, argv, env, log_path, cwd):
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = track(subprocess.Popen(["ip", "netns", "exec", ns, *argv], env=env, cwd=cwd,
                                           stdout=self.log, stderr=subprocess.STDOUT))

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM):
        # `ip netns exec` execs the program: the PID is the program's.
        terminate(self.proc, sig)
        self.log.close()


class Cluster3:
    def __init__(self, build=None, log_level="warn", hosts=HOSTS):
        """hosts: 3, or 1 for the single-host baseline bench/cluster3.py
        compares with (one NATS node, R1 streams, the gateway on host 0)."""
        pid = os.getpid()
        self.prefix = f"s{pid}"
        # A private /24 of 10.0.0.0/8 from the PID: 10.(100 + pid/256 % 100).(pid % 256).
        self.net = f"10.{100 + (pid >> 8) % 100}.{pid & 255}"
        self.bridge = f"{self.prefix}br"
        self.hosts = hosts
        self.gateway_hosts = GATEWAY_HOSTS if hosts == HOSTS else (0,)
        # index -> name: hosts 0..hosts-1, the database DB
        self.ns = {i: f"{self.prefix}h{i}" for i in range(hosts)} | {DB: f"{self.prefix}db"}
        self.veth = {i: f"{self.prefix}v{i}" for i in self.ns}
        self.tmp = tempfile.mkdtemp(prefix="svckit-cluster3-")
        self.build = pg_build(build)
        self.pg = None
        self.log_level = log_level
        self.users = ShopUsers(self.tmp, USERS)
        self.procs = {}  # (host, name) -> Proc
        self.sanitizer_reports = []  # filled by close(): "h0/orders: runtime error:"...
        self.made = []  # what close() removes: ("ns", name) / ("link", name)
        try:
            self._network()
            for i in range(hosts):
                self._nats(i)
            if hosts > 1:
                wait_until(lambda: all(self.routes(i) == hosts - 1 for i in range(hosts)), what="the routes")
                wait_until(lambda: all(self.jetstream_ready(i) for i in range(hosts)), what="JetStream in 3 nodes")
            # Its own directory: self.tmp (0700, root's) is closed to the server's user.
            self.pg = PgServer(tempfile.mkdtemp(prefix="svckit-pg-"), netns=self.ns[DB], host=self.ip(DB))
            self.pg.start()
            self.database_url = self.pg.database("shop")
            for i in range(hosts):
                for name in SERVICES:
                    self._service(i, name)
            for i in self.gateway_hosts:
                self._service(i, "gateway")
            for i in self.gateway_hosts:
                for name in SERVICES:
                    wait_until(lambda: self.gateway_instances(i, name) == hosts,
                               what=f"gateway {i} discovering {hosts} {name}")
        except BaseException:
            self.close()
            raise

    # ---- network --------------------------------------------------------------------

    def ip(self, i):
        return f"{self.net}.{i + 1}"

    def _network(self):
        run("ip", "link", "add", self.bridge, "type", "bridge")
        self.made.append(("link", self.bridge))
        run("ip", "addr", "add", f"{self.net}.254/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        for i, ns in self.ns.items():
            veth = self.veth[i]
            run("ip", "netns", "add", ns)
            self.made.append(("ns", ns))
            run("ip", "link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
            self.made.append(("link", veth))
            run("ip", "link", "set", f"{veth}p", "netns", ns)
            run("ip", "-n", ns, "link", "set", f"{veth}p", "name", "eth0")
            run("ip", "-n", ns, "addr", "add", f"{self.ip(i)}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "link", "set", veth, "master", self.bridge)
            run("ip", "link", "set", veth, "up")

    def cut(self, i):
        """Host i off the network: its veth's link down on the bridge side.
        Its processes keep running; nothing reaches them, nothing leaves."""
        assert i in range(self.hosts), "the database's namespace is never cut"
        run("ip", "link", "set", self.veth[i], "down")

    def heal(self, i):
        run("ip", "link", "set", self.veth[i], "up")

    # ---- processes ------------------------------------------------------------------

    def _env(self, extra):
        e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                e[k] = os.environ[k]
        e.update(self.users.server_env())
        e.update(extra)
        return e

    def _nats(self, i):
        d = os.path.join(self.tmp, f"n{i}")
        os.makedirs(d)
        routes = ", ".join(f"nats-route://{self.ip(j)}:{PORTS['route']}" for j in range(self.hosts) if j != i)
        cluster = f"cluster {{ name: svckit3, listen: {self.ip(i)}:{PORTS['route']}, routes: [{routes}] }}\n"
        with open(os.path.join(ROOT, "deploy", "nats-users.conf")) as f:
            users = f.read()
        conf = os.path.join(d, "nats.conf")
        with open(conf, "w") as f:
            f.write(f"server_name: n{i}\n"
                    f"listen: {self.ip(i)}:{PORTS['nats']}\n"
                    f"http: {self.ip(i)}:{PORTS['monitor']}\n"
                    f"jetstream {{ store_dir: \"{d}/js\" }}\n"
                    # Routes inside the private bridge, unauthenticated (module doc).
                    # A cut host is noticed in seconds, not at the 2-minute default.
                    f"ping_interval: \"2s\"\nping_max: 2\n"
                    + (cluster if self.hosts > 1 else "") + users)
        p = Proc(self.ns[i], f"nats{i}", [NATS_SERVER, "-c", conf], self._env({"GOMAXPROCS": "1"}),
                 os.path.join(d, "nats.log"), d)
        self.procs[(i, "nats")] = p
        wait_until(lambda: "Server is ready" in p.read_log() or p.proc.poll() is not None,
                   what=f"nats-server n{i}")
        assert p.proc.poll() is None, p.read_log()

    def nats_url(self, i):
        return f"nats://{self.ip(i)}:{PORTS['nats']}"

    def _service(self, i, name):
        d = os.path.join(self.tmp, f"h{i}-{name}")
        os.makedirs(d)
        env = {"PORT": str(PORTS[name]), "HOST": "0.0.0.0", "WORKERS": "1", "DATA_DIR": d,
               "LOG_FORMAT": "json", "LOG_LEVEL": self.log_level, "SHUTDOWN_TIMEOUT": "5", "DRAIN_DELAY": "0",
               "JWT_SECRET": SECRET, "NATS_URL": self.nats_url(i), "NATS_JS_REPLICAS": str(self.hosts),
               "NATS_NKEY_SEED_FILE": self.users.seed_file(name)}
        if name == "gateway":
            env["GATEWAY_CONFIG"] = gateway_config(d)
        else:
            env["DATABASE_URL"] = self.database_url
        p = Proc(self.ns[i], name, [os.path.join(ROOT, self.build, "bin", name)], self._env(env), os.path.join(d, f"{name}.log"), d)
        self.procs[(i, name)] = p
        wait_until(lambda: self.status(i, name, "/readyz") == 200 or p.proc.poll() is not None,
                   what=f"{name} on host {i} ready")
        assert p.proc.poll() is None, p.read_log()

    # ---- looking at it --------------------------------------------------------------

    def url(self, i, name, path):
        return f"http://{self.ip(i)}:{PORTS[name]}{path}"

    def status(self, i, name, path, timeout=2, headers=None):
        """The HTTP status of GET path on service name of host i."""
        req = urllib.request.Request(self.url(i, name, path), headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def monitor(self, i, path, timeout=2):
        with urllib.request.urlopen(self.url(i, "monitor", path), timeout=timeout) as r:
            return json.loads(r.read())

    def routes(self, i):
        return self.monitor(i, "/routez")["num_routes"]

    def jetstream_ready(self, i):
        """Node i's JetStream is in a cluster with a meta leader."""
        meta = self.monitor(i, "/jsz").get("meta_cluster") or {}
        return bool(meta.get("leader"))

    def stream(self, i, name="SHOP"):
        """Stream name as node i sees it: {"leader", "replicas": [{"name", "current", "offline"}...]}."""
        doc = self.monitor(i, "/jsz?accounts=true&streams=true")
        for acc in doc.get("account_details") or []:
            for s in acc.get("stream_detail") or []:
                if s["name"] == name:
                    return s.get("cluster") or {}
        return None

    def gateway_instances(self, i, service):
        with urllib.request.urlopen(self.url(i, "gateway", "/metrics"), timeout=2) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.startswith(f'gateway_instances{{service="{service}"}}'):
                return int(float(line.split()[-1]))
        return 0

    def logs(self):
        return {f"h{i}/{name}": p.read_log() for (i, name), p in self.procs.items()}

    # ---- the end --------------------------------------------------------------------

    def close(self):
        for key in list(self.procs)[::-1]:
            p = self.procs.pop(key)
            p.stop(signal.SIGKILL if key[1] == "nats" else signal.SIGTERM)
            log = p.read_log()
            self.sanitizer_reports += [f"h{key[0]}/{key[1]}: {m}" for m in SANITIZER_MARKERS if m in log]
        if self.pg:
            self.pg.stop()
            shutil.rmtree(self.pg.root, ignore_errors=True)
            self.pg = None
        for kind, name in self.made[::-1]:
            if kind == "ns":
                run("ip", "netns", "del", name, check=False)
            else:
                run("ip", "link", "del", name, check=False)
        self.made = []
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def leftovers(prefix):
    """Namespaces and links of this prefix still there (none after close())."""
    ns = [n.split()[0] for n in run("ip", "netns", "list").stdout.splitlines() if n.startswith(prefix)]
    links = [line for line in run("ip", "-o", "link").stdout.splitlines() if f" {prefix}" in line]
    return ns + links


# ---- a host lost under load ---------------------------------------------------------

PRODUCT_IDS = range(1, 11)
STOCK = 1000000  # every order can be confirmed: the test is about losing nothing, not stock
REQUEST_TIMEOUT = 5  # a client's bound on one request; a cut connection shows as a timeout


class Load:
    """Steady load through one gateway from the root namespace: readers of
    GET /products/:id and clients placing orders. A client retries an order
    that got no 201/200 with the same Idempotency-Key, as a real one would; an
    order counts as acknowledged at its 201/200. Every outcome is kept with
    its time (time.monotonic())."""

    def __init__(self, cluster, via, readers=3, buyers=3):
        self.c, self.via = cluster, via
        self.reads = []  # (t, ok)
        self.acked = {}  # key -> (t, order id, product id)
        self.order_errors = 0
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._reader, args=(n,)) for n in range(readers)]
        self.threads += [threading.Thread(target=self._buyer, args=(n,)) for n in range(buyers)]
        for t in self.threads:
            t.start()

    def _call(self, conn, method, path, body=None, headers=None):
        """(status, doc) or (None, error) on a broken connection; conn[0] is
        replaced by a new connection after an error."""
        try:
            if conn[0] is None:
                conn[0] = http.client.HTTPConnection(self.c.ip(self.via), PORTS["gateway"], timeout=REQUEST_TIMEOUT)
            conn[0].request(method, path, body=body, headers=headers or {})
            r = conn[0].getresponse()
            data = r.read()
            return r.status, (json.loads(data) if data else None)
        except (OSError, http.client.HTTPException, ValueError) as e:
            if conn[0] is not None:
                conn[0].close()
            conn[0] = None
            return None, e

    def _reader(self, n):
        conn = [None]
        headers = {"Authorization": "Bearer " + token(f"reader{n}")}
        i = n
        while not self.stopping.is_set():
            i += 1
            pid = PRODUCT_IDS[i % len(PRODUCT_IDS)]
            st, doc = self._call(conn, "GET", f"/products/{pid}", headers=headers)
            ok = st == 200 and doc.get("id") == pid
            with self.lock:
                self.reads.append((time.monotonic(), ok))

    def _buyer(self, n):
        conn = [None]
        user = f"buyer{n}"
        while not self.stopping.is_set():
            key = secrets.token_hex(8)
            pid = PRODUCT_IDS[n % len(PRODUCT_IDS)]
            body = json.dumps({"items": [{"product_id": pid, "quantity": 1}]})
            headers = {"Authorization": "Bearer " + token(user), "Content-Type": "application/json",
                       "Idempotency-Key": key}
            while not self.stopping.is_set():
                st, doc = self._call(conn, "POST", "/orders", body, headers)
                if st in (200, 201):
                    with self.lock:
                        self.acked[key] = (time.monotonic(), doc["id"], pid)
                    break
                with self.lock:
                    self.order_errors += 1
                time.sleep(0.05)  # pacing of a retry, not a synchronisation

    def counts(self):
        with self.lock:
            return sum(ok for _, ok in self.reads), len(self.acked)

    def wait_for(self, reads, orders, what):
        """Until reads more reads succeeded and orders more orders were
        acknowledged than now."""
        r0, o0 = self.counts()
        wait_until(lambda: self.counts()[0] >= r0 + reads and self.counts()[1] >= o0 + orders,
                   timeout=2 * WAIT, what=what, interval=0.05)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join()


def settled(cluster, host, oid):
    """The order's status once it is no longer pending, asked of host's orders."""
    req = urllib.request.Request(cluster.url(host, "orders", f"/orders/{oid}"),
                                 headers={"Authorization": "Bearer " + token("root", "admin")})
    with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT) as r:
        status = json.loads(r.read())["status"]
    return status != "pending" and status


def stock(cluster, host, pid):
    req = urllib.request.Request(cluster.url(host, "products", f"/products/{pid}"),
                                 headers={"Authorization": "Bearer " + token("root", "admin")})
    with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT) as r:
        return json.loads(r.read())["stock"]


def set_stock(cluster, host):
    for pid in PRODUCT_IDS:
        req = urllib.request.Request(cluster.url(host, "products", f"/products/{pid}"),
                                     data=json.dumps({"stock": STOCK}).encode(), method="PATCH",
                                     headers={"Authorization": "Bearer " + token("root", "admin"),
                                              "Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT).close()


def leader_view(cluster, via):
    """Stream SHOP as its leader sees it (a follower's view of the others is
    stale), asking the leader that node via names; None if unknown."""
    leader = (cluster.stream(via) or {}).get("leader", "")
    return cluster.stream(int(leader[1:])) if leader.startswith("n") else None


def cut_noticed(cluster, cut, via):
    """The surviving nodes have dropped their routes to the cut one (by
    ping_interval * ping_max) and the stream has a leader among them: the
    stream as that leader sees it, or None."""
    if any(cluster.routes(i) != HOSTS - 2 for i in range(HOSTS) if i != cut):
        return None
    s = leader_view(cluster, via)
    return s and s["leader"] != f"n{cut}" and s


def order_throughput(cluster, via, orders=200, buyers=3):
    """Orders acknowledged per second through gateway `via`, `buyers`
    clients placing orders one after another (no reads), over `orders`
    orders after 20 of warm-up: bench/cluster3.py compares 3 hosts with 1."""
    set_stock(cluster, via)
    load = Load(cluster, via, readers=0, buyers=buyers)
    try:
        load.wait_for(0, 20, what="orders warming up")
        t0, (_, n0) = time.monotonic(), load.counts()
        load.wait_for(0, orders, what=f"{orders} orders")
        t1, (_, n1) = time.monotonic(), load.counts()
    finally:
        load.stop()
    return round((n1 - n0) / (t1 - t0), 1)


def lose_a_host(cluster, cut=1, via=2, warm=(200, 20), during=(400, 40), after=(200, 20)):
    """Steady load through gateway `via`; host `cut` is cut off once warm
    (reads, orders) succeeded, healed once `during` more did, and the load
    stops once `after` more did. Then waits until the healed host has
    rejoined (its node routed to both others and current in the stream SHOP,
    its gateway answering reads) and every acknowledged order has settled.
    Returns what happened (bench/cluster3.py prints it; test_cluster3.py
    checks it)."""
    set_stock(cluster, via)
    pids = {key: p.proc.pid for key, p in cluster.procs.items()}
    load = Load(cluster, via)
    try:
        load.wait_for(*warm, what="the load warming up")
        t_cut = time.monotonic()
        cluster.cut(cut)
        # JetStream with 2 of 3 nodes: once the others have dropped the cut
        # node and the stream has a leader among them, the load goes on.
        # Also: the surviving gateway stops routing to the cut host's
        # instances (it drops them from discovery).
        seen = {}

        def noticed():
            if "unrouted" not in seen and all(cluster.gateway_instances(via, name) == HOSTS - 1
                                              for name in SERVICES):
                seen["unrouted"] = time.monotonic()
            if "stream" not in seen and cut_noticed(cluster, cut, via):
                seen["stream"] = cut_noticed(cluster, cut, via)
                seen["noticed"] = time.monotonic()
            return len(seen) == 3
        wait_until(noticed, timeout=4 * WAIT, what="the cluster and the gateway noticing the cut")
        stream_cut, t_noticed = seen["stream"], seen["noticed"]
        load.wait_for(*during, what="reads and orders with a host cut")
        # The saga runs on JetStream: orders placed after the cut was noticed
        # settle before the heal.
        with load.lock:
            late = [oid for t, oid, _ in load.acked.values() if t > t_noticed][-5:]
        settled_while_cut = [wait_until(lambda: settled(cluster, via, oid), timeout=4 * WAIT,
                                        what=f"order {oid} settled while cut") for oid in late]
        t_heal = time.monotonic()
        cluster.heal(cut)
        load.wait_for(*after, what="reads and orders after the heal")
    finally:
        load.stop()

    reader = {"Authorization": "Bearer " + token("reader")}

    state = {}

    def rejoined():
        s = leader_view(cluster, via)
        state.update(routes=cluster.routes(cut), stream=s,
                     read=cluster.status(cut, "gateway", "/products/1", headers=reader))
        current = {r["name"] for r in (s or {}).get("replicas", []) if r.get("current")}
        state["routed"] = {name: cluster.gateway_instances(via, name) for name in SERVICES}
        return (state["routes"] == HOSTS - 1 and f"n{cut}" in current and state["read"] == 200
                and set(state["routed"].values()) == {HOSTS})
    try:
        wait_until(rejoined, timeout=4 * WAIT, what=f"host {cut} rejoining")
    except AssertionError as e:
        raise AssertionError(f"{e}; last seen: {state}") from None
    t_rejoined = time.monotonic()
    outcomes = {}
    sold = collections.Counter()
    for key, (_, oid, pid) in load.acked.items():
        outcomes[oid] = wait_until(lambda: settled(cluster, via, oid), timeout=4 * WAIT, what=f"order {oid} settled")
        sold[pid] += outcomes[oid] == "confirmed"
    # The stock in PostgreSQL (asked of the healed host's products) is what
    # the confirmed orders left, product by product.
    stock_off = {pid: STOCK - stock(cluster, cut, pid) - sold[pid] for pid in PRODUCT_IDS}

    fails = [t for t, ok in load.reads if not ok]
    after_cut = [t for t in fails if t >= t_cut]
    return {
        "reads": len(load.reads),
        "reads_failed": len(fails),
        "reads_failed_before_cut": len(fails) - len(after_cut),
        "reads_failed_window_s": round(after_cut[-1] - t_cut, 3) if after_cut else 0.0,
        "orders_acked": len(load.acked),
        "order_attempts_failed": load.order_errors,
        "orders_acked_while_cut": sum(t_cut <= t < t_heal for t, _, _ in load.acked.values()),
        "stock_off": {pid: n for pid, n in stock_off.items() if n},
        "orders": dict(collections.Counter(outcomes.values())),
        "order_ids_distinct": len(set(outcomes)) == len(load.acked),
        "cut_s": round(t_heal - t_cut, 3),
        "cut_noticed_s": round(t_noticed - t_cut, 3),
        "unrouted_s": round(seen["unrouted"] - t_cut, 3),
        "rejoin_s": round(t_rejoined - t_heal, 3),
        "stream_while_cut": stream_cut,
        "settled_while_cut": settled_while_cut,
        "restarted": [f"h{i}/{n}" for (i, n), pid in pids.items()
                      if cluster.procs[(i, n)].proc.poll() is not None or cluster.procs[(i, n)].proc.pid != pid],
    }
