#!/usr/bin/env python3
"""Three hosts on this machine, losing one: the timings (`make demo-cluster`,
bench/README.md "Three hosts, losing one").

Builds the cluster of tests/integration/cluster3_support.py (three network
namespaces on a bridge, a 3-node NATS cluster with R3 JetStream, every shop
service on every host on PostgreSQL in a fourth namespace, a gateway on hosts
1 and 2), puts a steady load of
product reads and orders on host 2's gateway, cuts host 1 off (link down),
heals it, and prints what happened, one JSON object per run, then a summary
line per run. Each run also measures order throughput (3 clients ordering
one after another) on that cluster, once healed, and first on a single host (one namespace, one
NATS node with R1 streams, the same PostgreSQL) built the same way, and
reports the ratio. Everything it made is removed at the end, also on Ctrl-C or
SIGTERM. Needs root (network namespaces).

    sudo python3 bench/cluster3.py [--runs N] [--during READS,ORDERS]

SVCKIT_BUILD picks the binaries (default build; its PostgreSQL build, build/pg,
is used)."""
import argparse
import json
import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from cluster3_support import (Cluster3, cannot_make_namespaces, leftovers, lose_a_host,  # noqa: E402
                              missing_pg_build, order_throughput)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--during", default="400,40",
                    help="successful reads,acknowledged orders to wait for once the cut is noticed")
    ap.add_argument("--orders", type=int, default=200, help="orders the throughput is measured over")
    args = ap.parse_args()
    why = cannot_make_namespaces() or missing_pg_build()
    if why:
        sys.exit(f"cluster3: {why}")
    during = tuple(int(x) for x in args.during.split(","))
    # SIGTERM unwinds like Ctrl-C, so that close() removes the namespaces.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for n in range(args.runs):
        single = Cluster3(hosts=1)
        try:
            single_rate = order_throughput(single, via=0, orders=args.orders)
        finally:
            single.close()
        cluster = Cluster3()
        try:
            print(f"cluster3: run {n + 1}: hosts {cluster.net}.1-3 (namespaces {cluster.prefix}h0-2, "
                  f"{cluster.prefix}db); "
                  "cutting host 1 under load", file=sys.stderr)
            r = lose_a_host(cluster, cut=1, via=2, during=during)
            rate = order_throughput(cluster, via=2, orders=args.orders)  # healed, every order settled
            r.update(orders_per_s=rate, orders_per_s_single_host=single_rate, ratio=round(rate / single_rate, 2))
        finally:
            cluster.close()
        left = leftovers(cluster.prefix)
        if left:
            sys.exit(f"cluster3: left behind: {left}")
        print(json.dumps(r))
        share = 100.0 * r["reads_failed"] / max(r["reads"], 1)
        print(f"run {n + 1}: reads {r['reads']} failed {r['reads_failed']} ({share:.3f}%) "
              f"window {r['reads_failed_window_s']} s; orders {r['orders_acked']} ({r['orders_acked_while_cut']} "
              f"while cut) {r['orders']}; "
              f"settled while cut {r['settled_while_cut']}; "
              f"cut noticed {r['cut_noticed_s']} s; unrouted {r['unrouted_s']} s; rejoined {r['rejoin_s']} s after heal; "
              f"restarted {r['restarted'] or 'none'}; "
              f"orders/s {r['orders_per_s']} on 3 hosts, {r['orders_per_s_single_host']} on 1 (ratio {r['ratio']})",
              file=sys.stderr)


if __name__ == "__main__":
    main()
