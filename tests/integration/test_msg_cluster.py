"""A NATS cluster: the client given one seed URL learns the others from the
servers' INFO connect_urls and survives losing the node it is on;
NATS_NO_ADVERTISED keeps it on the configured servers, and announced URLs
are validated (a fake server announces hostile ones); JetStream streams get
NATS_JS_REPLICAS copies on a 3-node JetStream cluster. Every node listens on
free ports; the tests end only the processes they started."""
import select
import signal
import socket

import pytest

from conftest import WAIT, free_port, wait_until
from test_msg_support import FakeServer, Nats, NatsServer, msgsvc


class Cluster:
    """Three nats-servers with JetStream, routed to each other."""

    def __init__(self, n=3):
        ports = [(free_port(), free_port()) for _ in range(n)]
        self.nodes = []
        for i, (_, cport) in enumerate(ports):
            routes = ", ".join(f"nats-route://127.0.0.1:{c}" for j, (_, c) in enumerate(ports) if j != i)
            node = NatsServer(port=ports[i][0], jetstream=False, start=False)
            node.write_conf(f"server_name: n{i}\n"
                            f"jetstream {{ store_dir: \"{node.tmp}/js\" }}\n"
                            f"cluster {{ name: svckit, listen: 127.0.0.1:{cport}, routes: [{routes}] }}\n")
            self.nodes.append(node)
        for node in self.nodes:
            node.start()
        wait_until(lambda: all(len(self.connect_urls(x)) == n for x in self.nodes), what="the routes")
        wait_until(self.jetstream_ready, what="a JetStream meta leader")

    @staticmethod
    def connect_urls(node):
        c = Nats(node.port)
        try:
            return c.info.get("connect_urls") or []
        finally:
            c.close()

    def jetstream_ready(self):
        c = Nats(self.nodes[0].port)
        try:
            return "error" not in c.request("$JS.API.INFO", b"", timeout=5).json()
        except (TimeoutError, socket.timeout):
            return False
        finally:
            c.close()

    def close(self):
        for node in self.nodes:
            node.close()


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    try:
        yield c
    finally:
        c.close()


def served(port):
    c = Nats(port)
    try:
        r = c.svc("msgsvc", "GET", "/hello/cluster")
        return r.svc_status == 200
    finally:
        c.close()


def test_streams_get_the_configured_replicas(cluster):
    with msgsvc(cluster.nodes[0], env={"MSGSVC_JS": "1", "NATS_JS_REPLICAS": "3"}):
        c = Nats(cluster.nodes[1].port)
        try:
            # A busy JetStream cluster may drop an API request (seen on a
            # loaded machine): ask again rather than wait out one request.
            # The stream's peers are known once it has a leader and every
            # replica it was created with has reported.
            def settled():
                d = c.request("$JS.API.STREAM.INFO.ORDERS", b"", timeout=5).json()
                cl = d.get("cluster", {})
                want = d.get("config", {}).get("num_replicas", 0)
                return "error" not in d and cl.get("leader") and len(cl.get("replicas", [])) == want - 1 and d

            info = wait_until(settled, what="stream ORDERS with its replicas")
        finally:
            c.close()
        assert info["config"]["num_replicas"] == 3, info["config"]
        peers = {r["name"] for r in info["cluster"]["replicas"]} | {info["cluster"]["leader"]}
        assert peers == {"n0", "n1", "n2"}, info["cluster"]


def test_an_unreachable_seed_among_good_ones(cluster):
    dead = f"nats://127.0.0.1:{free_port()}"
    env = {"NATS_URL": f"{dead},{cluster.nodes[1].url}", "WORKERS": "1", "NATS_NO_ADVERTISED": "1"}
    with msgsvc(None, env=env) as s:
        lines = [d["msg"] for d in s.log_lines() if d["msg"].startswith("nats: cannot connect to")]
        assert len(lines) == 1 and dead[len("nats://"):] in lines[0], lines
        assert served(cluster.nodes[1].port)


def reconnections(svc):
    return [d["msg"] for d in svc.log_lines() if d["msg"].startswith("nats: reconnected to ")]


def test_one_seed_learns_the_cluster_and_survives_its_node(cluster):
    seed, others = cluster.nodes[0], cluster.nodes[1:]
    with msgsvc(seed, env={"WORKERS": "2"}) as s:
        wait_until(lambda: "nats: 3 server(s) in the pool (1 configured)" in s.read_log(), what="the pool")
        seed.stop(signal.SIGKILL)
        try:
            lines = wait_until(lambda: len(reconnections(s)) >= 2 and reconnections(s), what="both workers back")
            ports = {f"127.0.0.1:{n.port}" for n in others}
            assert all(l.split()[3] in ports for l in lines), lines
            wait_until(lambda: s.request("GET", "/readyz")[0] == 200, what="ready again")
            assert served(others[0].port) and served(others[1].port)
        finally:
            seed.start()


HOSTILE = ["evil host:4222", "x@127.0.0.1:4222", "127.0.0.1:99999", "a" * 600, "127.0.0.1:1/path"]


@pytest.mark.parametrize("no_advertised", ["1", "0"])
def test_announced_servers_are_validated_and_optional(no_advertised):
    trap = socket.socket()  # an announced server: never accepted, only watched
    trap.bind(("127.0.0.1", 0))
    trap.listen(8)
    fake = FakeServer({"connect_urls": HOSTILE + [f"127.0.0.1:{trap.getsockname()[1]}"]})
    env = {"NATS_URL": f"nats://127.0.0.1:{fake.port}", "WORKERS": "1", "NATS_NO_ADVERTISED": no_advertised}
    try:
        with msgsvc(None, env=env, wait_ready=False) as s:
            fake.serve_one()
            if no_advertised == "1":
                # The next attempt goes to the next server of the pool: the
                # seed again, never the announced one.
                fake.serve_one()
                assert not select.select([trap], [], [], 0)[0], "connected to an announced server"
                fake.serve_one()
                lines = [d["msg"] for d in s.log_lines() if "not followed (NATS_NO_ADVERTISED)" in d["msg"]]
                assert len(lines) == 1, lines
            else:
                assert select.select([trap], [], [], WAIT)[0], "the announced server was not tried"
                refused = [d["msg"] for d in s.log_lines() if d["msg"].endswith("; refused")]
                assert len(refused) == 1 and "evil host:4222" in refused[0], refused
                assert "nats: 2 server(s) in the pool (1 configured)" in s.read_log()
    finally:
        fake.close()
        trap.close()


@pytest.mark.parametrize("var,value", [("NATS_JS_REPLICAS", "0"), ("NATS_JS_REPLICAS", "6"),
                                       ("NATS_JS_REPLICAS", "three"), ("NATS_NO_ADVERTISED", "maybe"),
                                       ("NATS_JS_MAX_AGE", "3599"), ("NATS_JS_MAX_AGE", "1w"),
                                       ("NATS_JS_MAX_BYTES", "1048575"), ("NATS_JS_MAX_BYTES", "-1")])
def test_bad_cluster_settings_stop_the_service(var, value):
    env = {"NATS_URL": "nats://127.0.0.1:9", var: value}
    with msgsvc(None, env=env, wait_ready=False, check_exit=False) as s:
        assert s.proc.wait(WAIT) == 2, s.read_log()
        lines = s.read_log().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f'msgsvc: invalid configuration: {var}="{value}"'), lines
