"""Three hosts on this machine, losing one (issue 12 item 5): three network
namespaces on a bridge, a 3-node NATS cluster with JetStream and R3 streams,
one instance of every shop service (auth, products, orders, payments) on
every host, all on PostgreSQL in a fourth namespace (the managed database),
a gateway on hosts 1 and 2 (cluster3_support.py describes the layout). Under
a steady load of product reads and orders through host 2's gateway, host 1
(a NATS node, an instance of every service and a gateway) is cut off (its
veth's link down: its processes keep running, unreachable) and healed.

What must hold, by counts and conditions, never by time:
  - reads through the surviving gateway go on succeeding: the load has to
    reach its counts of successful reads after the cut is noticed, and the
    failed reads are counted (printed; at most 0.1% of those sent); the
    gateway stops routing to the cut host's instances, and routes to them
    again after the heal;
  - no acknowledged order is lost and every one settles (asked of orders),
    and the stock in PostgreSQL is what the confirmed orders left;
  - JetStream stays available with 2 of 3 nodes: orders placed after the
    cut was noticed are confirmed (the saga runs on JetStream) before the
    heal, and the stream (3 replicas) has its leader on a surviving node;
  - the healed host rejoins without a restart: its node routes to both
    others and is a current replica again, its gateway serves reads, and no
    process was started again.
Skipped, with the reason, where network namespaces cannot be made (no root,
no iproute2) or the PostgreSQL build (build/pg, build/san-pg) is missing. The timings go to bench/cluster3.py (bench/README.md)."""
import pytest

from cluster3_support import HOSTS, Cluster3, cannot_make_namespaces, leftovers, lose_a_host, missing_pg_build

why = cannot_make_namespaces() or missing_pg_build()
pytestmark = pytest.mark.skipif(why is not None, reason=f"cluster3: {why}")


def test_losing_a_host_loses_nothing():
    cluster = Cluster3()
    try:
        r = lose_a_host(cluster, cut=1, via=2)
    finally:
        cluster.close()
    assert leftovers(cluster.prefix) == [], "namespaces or links left behind"
    assert cluster.sanitizer_reports == [], cluster.sanitizer_reports
    print(f"\ncluster3: {r['reads_failed']} of {r['reads']} reads failed; {r['orders_acked']} orders, "
          f"{r['orders_acked_while_cut']} while cut; cut noticed after {r['cut_noticed_s']} s, "
          f"unrouted after {r['unrouted_s']} s")

    assert r["reads_failed_before_cut"] == 0, r
    assert r["reads_failed"] * 1000 <= r["reads"], r
    assert r["orders_acked_while_cut"] > 0, r
    assert r["settled_while_cut"] and set(r["settled_while_cut"]) == {"confirmed"}, r
    assert r["order_ids_distinct"], r
    assert sum(r["orders"].values()) == r["orders_acked"], r
    assert set(r["orders"]) <= {"confirmed", "cancelled"}, r
    assert r["stock_off"] == {}, r
    stream = r["stream_while_cut"]
    assert stream["leader"] != "n1" and len(stream["replicas"]) == HOSTS - 1, stream
    assert r["unrouted_s"] is not None, r
    assert r["restarted"] == [], r
