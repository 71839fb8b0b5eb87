#!/usr/bin/python3
"""OpenDHT on the same machine with the same N and K: the third column beside peerkv-bench.

Run by hand, never by CI. Needs Debian's OpenDHT bindings (they import only into Debian's own
python3, hence the shebang):

    apt-get install -y python3-opendht
    /usr/bin/python3 scripts/opendht_bench.py --nodes 100 --keys 200 --out bench/opendht-n100.json

It starts N DhtRunner nodes in this one process on 127.0.0.1 (and ::1), each bootstrapping from
a random earlier node (seeded), waits until the routing tables stop changing, then runs the
workload of peerkv-bench: K puts from random nodes (OpenDHT's blocking put: it returns once
the value is stored), K gets from a node that holds no copy, timed to the first value (the
search is then stopped, as the libp2p-kad baseline does), gets from a node that holds one
(reported apart), and gets with C in flight at once. It prints, and writes as JSON, the same
latency figures (median, p95, p99, max), success rates, ops/s, CPU seconds per op and RSS per
node (process RSS / N, and the same less the RSS before any node started).

As root, with unshare(1) and ip(8), it re-runs itself in a network namespace of its own that
has only a loopback interface: its traffic cannot leave the machine, and the loopback counters
then count its packets alone (wire packets and bytes per op). Without that it runs on the
shared loopback and reports no wire figures. Every loop is bounded in count and time.

What it cannot report: lookup hops (the bindings do not expose them); messages per op are the
sum over all nodes of OpenDHT's own per-node message counters (getNodeMessageStats, which
resets on reading), not a per-operation trace.
"""

import argparse
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time

NETNS_ENV = "OPENDHT_BENCH_NETNS"
TARGET_NODES = 8  # OpenDHT stores a value on the 8 nodes closest to its key.
SETTLE_POLL = 0.5
SETTLE_STREAK = 6
GETTER_TRIES = 6


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=10)
    p.add_argument("--keys", type=int, default=100)
    p.add_argument("--value-size", type=int, default=1024)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--concurrent-ops", type=int, default=None, help="default: 2 x K")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=10.0, help="deadline of one operation, s")
    p.add_argument("--settle-timeout", type=float, default=None, help="default: 20 + N / 10 s")
    p.add_argument("--isolate", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--out", help="write the JSON here")
    return p.parse_args()


def netns_available():
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    probe = ["unshare", "--net", "--", "ip", "link", "set", "lo", "up"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def reexec_isolated(args):
    """Runs this script again inside a new network namespace; returns its exit code."""
    env = dict(os.environ, **{NETNS_ENV: "1"})
    cmd = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
           sys.executable, os.path.abspath(__file__)] + sys.argv[1:]
    return subprocess.run(cmd, env=env, check=False).returncode


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return None


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def loopback():
    with open("/proc/net/dev") as f:
        for line in f:
            line = line.strip()
            if line.startswith("lo:"):
                fields = [int(x) for x in line[3:].split()]
                return fields[8], fields[9]  # tx bytes, tx packets
    return None


def latency(ms):
    ms = sorted(ms)
    n = len(ms)

    def rank(p):
        if n == 0:
            return None
        idx = min(max(int(-(-p * n // 1)), 1), n) - 1  # nearest rank
        return ms[idx]

    return {"samples": n, "median_ms": rank(0.5), "p95_ms": rank(0.95), "p99_ms": rank(0.99),
            "max_ms": ms[-1] if ms else None, "mean_ms": sum(ms) / n if n else None}


class Phase:
    """Counters of one phase: latencies, successes, CPU, wire and message deltas."""

    def __init__(self, nodes, isolated, concurrency=1):
        self.nodes, self.isolated, self.concurrency = nodes, isolated, concurrency
        self.ops = self.ok = self.local = 0
        self.lat, self.errors = [], []
        self.lock = threading.Lock()
        for n in nodes:  # reset OpenDHT's per-node message counters
            n.getNodeMessageStats()
        self.t0, self.cpu0, self.wire0 = time.perf_counter(), cpu_seconds(), loopback()

    def record(self, ok, ms=None, error=None, local=False):
        with self.lock:
            self.ops += 1
            if ok:
                self.ok += 1
                if local:
                    self.local += 1
                elif ms is not None:
                    self.lat.append(ms)
            elif error and len(self.errors) < 5 and error not in self.errors:
                self.errors.append(error)

    def finish(self):
        seconds = time.perf_counter() - self.t0
        cpu = cpu_seconds() - self.cpu0
        msgs = sum(sum(n.getNodeMessageStats()) for n in self.nodes)
        wire = loopback()
        per_op = (lambda x: x / self.ops) if self.ops else (lambda x: None)
        out = {
            "ops": self.ops, "ok": self.ok,
            "success_rate": self.ok / self.ops if self.ops else None,
            "latency": latency(self.lat), "concurrency": self.concurrency,
            "seconds": seconds, "ops_per_s": self.ok / seconds if seconds > 0 else None,
            "local_hits": self.local, "messages_per_op": per_op(msgs),
            "cpu_s_per_op": per_op(cpu), "wire_packets_per_op": None, "wire_bytes_per_op": None,
            "errors": self.errors,
        }
        if self.isolated and self.wire0 and wire:
            out["wire_bytes_per_op"] = per_op(wire[0] - self.wire0[0])
            out["wire_packets_per_op"] = per_op(wire[1] - self.wire0[1])
        return out


def routing_size(node):
    log = node.getRoutingTablesLog(socket.AF_INET)
    return sum(1 for line in log.splitlines() if line.strip().startswith("Node "))


def main():
    args = parse_args()
    isolated = os.environ.get(NETNS_ENV) == "1"
    if not isolated and args.isolate != "off":
        if netns_available():
            sys.exit(reexec_isolated(args))
        if args.isolate == "on":
            sys.exit("--isolate on: cannot create a network namespace (needs root, unshare, ip)")
    try:
        import opendht as dht
    except ImportError:
        sys.exit("opendht is not importable: apt-get install python3-opendht, run with /usr/bin/python3")

    n_nodes, k = args.nodes, args.keys
    concurrent_ops = args.concurrent_ops if args.concurrent_ops is not None else 2 * k
    settle_timeout = args.settle_timeout if args.settle_timeout is not None else 20 + n_nodes / 10
    rss_before = rss_bytes()

    # Start-up: node i bootstraps from a random earlier node.
    tree = random.Random(args.seed ^ 0x74726565)
    t0 = time.perf_counter()
    nodes, ports = [], []
    for i in range(n_nodes):
        node = dht.DhtRunner()
        node.run(ipv4="127.0.0.1", ipv6="::1", port=0)
        if nodes:
            node.bootstrap("127.0.0.1", str(ports[tree.randrange(len(nodes))]))
        nodes.append(node)
        ports.append(node.getBound().getPort())
        if (i + 1) % 50 == 0 or i + 1 == n_nodes:
            print(f"opendht: {i + 1}/{n_nodes} nodes started", file=sys.stderr)
    startup_s = time.perf_counter() - t0
    print(f"opendht: {n_nodes} nodes started in {startup_s:.1f} s", file=sys.stderr)

    # Settle: routing tables unchanged for SETTLE_STREAK polls in a row.
    t0 = time.perf_counter()
    base, last, streak, settled, sizes = t0, None, 0, False, []
    while True:
        sizes = [routing_size(n) for n in nodes]
        total, now = sum(sizes), time.perf_counter()
        if last is not None and abs(total - last) <= max(1, last // 200):
            streak += 1
        else:
            streak, base = 0, now
        last = total
        if streak >= SETTLE_STREAK:
            settled = True
            break
        if now - t0 >= settle_timeout:
            break
        time.sleep(SETTLE_POLL)
    settle = {"seconds": base - t0, "settled": settled,
              "routing_table_mean": sum(sizes) / len(sizes), "routing_table_min": min(sizes)}
    rss_settled = rss_bytes()
    print(f"opendht: settled={settled} after {settle['seconds']:.1f} s, routing tables "
          f"{settle['routing_table_mean']:.1f} on average (min {settle['routing_table_min']})",
          file=sys.stderr)

    ids = [int(str(n.getNodeId().decode() if isinstance(n.getNodeId(), bytes) else n.getNodeId()), 16)
           for n in nodes]
    keys = [f"bench-{args.seed}-{i}" for i in range(k)]
    hashes = [dht.InfoHash.get(key) for key in keys]
    values = [random.Random(args.seed * 1_000_003 + i).randbytes(args.value_size) for i in range(k)]
    putters = [random.Random(args.seed * 7_919 + i).randrange(n_nodes) for i in range(k)]

    def holds(j, i):
        return str(hashes[i]) in nodes[j].getStorageLog()

    def timed_get(phase, j, i):
        """One get from node j of key i, timed to the first value; blocks until done."""
        done, first = threading.Event(), {}
        t = time.perf_counter()

        def on_value(v):
            if "ms" not in first:
                first["ms"] = (time.perf_counter() - t) * 1000
                first["ok"] = bytes(v.data) == values[i]
            return False  # the first value answers the get: stop the search

        def on_done(ok, _nodes):
            done.set()

        nodes[j].get(hashes[i], on_value, on_done)
        if not done.wait(args.timeout) and "ms" not in first:
            phase.record(False, error=f"no answer within {args.timeout:.0f} s")
        elif "ms" in first:
            phase.record(first["ok"], first["ms"], None if first["ok"] else "a different value")
        else:
            phase.record(False, error="not found")

    # Puts, one at a time (blocking put: returns when the store is acknowledged).
    put = Phase(nodes, isolated)
    for i in range(k):
        t = time.perf_counter()
        ok = nodes[putters[i]].put(hashes[i], dht.Value(values[i]))
        put.record(bool(ok), (time.perf_counter() - t) * 1000, None if ok else "put failed")
    put = put.finish()

    # Getters: not among the 8 closest to the key, and checked to hold no copy.
    getters, holders = [], []
    for i in range(k):
        rng = random.Random(args.seed * 104_729 + i)
        h = int(str(hashes[i]), 16)
        closest = set(sorted(range(n_nodes), key=lambda j: ids[j] ^ h)[:TARGET_NODES])
        cands = [j for j in range(n_nodes) if j != putters[i] and j not in closest]
        rng.shuffle(cands)
        free = [j for j in cands[:GETTER_TRIES] if not holds(j, i)]
        if not free:  # N close to 8: any peer without a copy
            others = [j for j in range(n_nodes) if j != putters[i]]
            rng.shuffle(others)
            free = [j for j in others[:GETTER_TRIES] if not holds(j, i)][:1]
        getters.append(free)
        holders.append(next((j for j in [putters[i]] + sorted(closest) if holds(j, i)), None))

    get = Phase(nodes, isolated)
    for i in range(k):
        if getters[i]:
            timed_get(get, getters[i][0], i)
        else:
            get.record(False, error="no node without a copy to get from")
    get = get.finish()

    held = Phase(nodes, isolated)
    for i in range(k):
        if holders[i] is not None:
            timed_get(held, holders[i], i)
    held = held.finish()

    # Concurrent gets: C threads take jobs from a shared list.
    rng = random.Random(args.seed ^ 0x636F6E63)
    gettable = [i for i in range(k) if getters[i]]
    jobs = [(i, rng.choice(getters[i])) for i in (rng.choice(gettable) for _ in range(concurrent_ops))] if gettable else []
    conc = Phase(nodes, isolated, args.concurrency)
    cursor, cursor_lock = [0], threading.Lock()

    def worker():
        while True:
            with cursor_lock:
                if cursor[0] >= len(jobs):
                    return
                i, j = jobs[cursor[0]]
                cursor[0] += 1
            timed_get(conc, j, i)

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=args.timeout * (len(jobs) + 1))
    conc = conc.finish()

    rss_after = rss_bytes()
    result = {
        "system": "opendht", "nodes": n_nodes, "isolated_network": isolated,
        "params": {"nodes": n_nodes, "keys": k, "value_size": args.value_size,
                   "concurrency": args.concurrency, "concurrent_ops": concurrent_ops,
                   "seed": args.seed, "op_timeout_s": args.timeout, "replication": TARGET_NODES},
        "startup": {"seconds": startup_s}, "settle": settle,
        "put": put, "get": get, "get_from_holder": held, "concurrent_get": conc,
        "memory": {
            "rss_before_nodes_bytes": rss_before, "rss_after_settle_bytes": rss_settled,
            "rss_after_workload_bytes": rss_after,
            "rss_per_node_after_settle_bytes": rss_settled // n_nodes,
            "rss_per_node_after_workload_bytes": rss_after // n_nodes,
            "rss_per_node_less_interpreter_after_workload_bytes": (rss_after - rss_before) // n_nodes,
        },
        "not_measured": ["lookup hops and requests per lookup: the Python bindings expose neither"]
        + ([] if isolated else ["wire_*: no network namespace of its own"]),
    }

    def f(v, d=2):
        return "–" if v is None else f"{v:.{d}f}"

    print(f"\n### OpenDHT 2.4 (python3-opendht), N = {n_nodes}, K = {k}, {args.value_size} B values, C = {args.concurrency}\n")
    print("| figure | OpenDHT |\n| --- | ---: |")
    pl, gl, hl, cl = put["latency"], get["latency"], held["latency"], conc["latency"]
    print(f"| put median / p95 / p99 / max, ms | {f(pl['median_ms'])} / {f(pl['p95_ms'])} / {f(pl['p99_ms'])} / {f(pl['max_ms'])} |")
    print(f"| put success | {f(100 * (put['success_rate'] or 0), 1)} % |")
    print(f"| get (no local copy) median / p95 / p99 / max, ms | {f(gl['median_ms'])} / {f(gl['p95_ms'])} / {f(gl['p99_ms'])} / {f(gl['max_ms'])} |")
    print(f"| get success | {f(100 * (get['success_rate'] or 0), 1)} % |")
    print(f"| get from a holder (its own store answers first) median / p99, ms | {f(hl['median_ms'])} / {f(hl['p99_ms'])} |")
    print(f"| messages per get / put (all nodes' counters) | {f(get['messages_per_op'], 1)} / {f(put['messages_per_op'], 1)} |")
    print(f"| wire packets per get / put | {f(get['wire_packets_per_op'], 0)} / {f(put['wire_packets_per_op'], 0)} |")
    print(f"| concurrent gets per s | {f(conc['ops_per_s'], 0)} |")
    print(f"| concurrent get median / p99, ms | {f(cl['median_ms'])} / {f(cl['p99_ms'])} |")
    print(f"| concurrent get success | {f(100 * (conc['success_rate'] or 0), 1)} % |")
    print(f"| CPU ms per get (concurrent) / put | {f((conc['cpu_s_per_op'] or 0) * 1000)} / {f((put['cpu_s_per_op'] or 0) * 1000)} |")
    print(f"| RSS per node after settle / workload, KiB | {rss_settled / n_nodes / 1024:.0f} / {rss_after / n_nodes / 1024:.0f} |")
    print(f"| RSS per node less the interpreter, KiB | {(rss_after - rss_before) / n_nodes / 1024:.0f} |")
    print(f"| start-up / settle, s | {startup_s:.1f} / {settle['seconds']:.1f}{'' if settled else ' (not settled)'} |")
    print(f"| routing table mean (min) | {settle['routing_table_mean']:.1f} ({settle['routing_table_min']}) |")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)
        print(f"\nopendht: wrote {args.out}", file=sys.stderr)
    # Shutting down many DhtRunners one by one can hang for minutes (seen at N = 100); the
    # nodes hold nothing worth a clean stop, so the process ends with them.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
