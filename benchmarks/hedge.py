"""Slow tails and hedged reads (the store option hedge) against the fault server.

    python3 benchmarks/hedge.py [--objects 10000] [--size 65536] [--concurrency 64]
                                [--slow 0.01] [--delay 1.0] [--rounds 3]
                                [--cdf benchmarks/plots/hedge_cdf.csv]
                                [--plot benchmarks/plots/hedge_cdf.png]

Run it with benchmarks/.venv/bin/python (made by benchmarks/run.py) for the plot.

The fault server (tests/servers/faultserver.py) runs in `--servers` processes sharing one
port (SO_REUSEPORT; one asyncio process would be the bottleneck) and holds back `--slow` of
the GET responses by `--delay` seconds (set_slow with a seeded random draw per request: a
hedge of a slow key is slow again with the same small chance). Each round runs, each in a
fresh client process (its own engine and connections, warmed up on `--warm` other keys
first, so the store has learned its delay):

  clean      no slow responses, hedging off: the batch to match
  clean+h    no slow responses, hedging on: what hedging costs when nothing is slow
  slow       slow responses, hedging off
  slow+h     slow responses, hedging on

A batch is one iter_get of `--objects` keys. A key's latency is from the server's receipt of
its first request to the client's receipt of its value. Prints, per configuration, the
median over rounds of: batch time, p50, p99, p99.9 latency, extra requests (GETs the
server saw beyond one per key) and hedges sent/won (engine_stats), and the ratio of batch
time to the clean batch of the same round. Writes the last round's latency CDF (at
fractions finer in the tail) to the CDF file and plots it when matplotlib is importable.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

CONFIGS = [("clean", False, False), ("clean+h", False, True), ("slow", True, False),
           ("slow+h", True, True)]

CLIENT = r"""
import json, resource, sys, time
import cloudfiles_store as c
url, n, conc, hedge, warm, out = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                  sys.argv[4] == "1", int(sys.argv[5]), sys.argv[6])
opts = {"concurrency": conc}
if hedge:
    opts["hedge"] = True
s = c.CloudFilesStore(url, **opts)
wkeys = [f"w/{i}" for i in range(warm)]
assert all(v is not None for _, v in s.iter_get(wkeys))  # connections made, delay learned
before = c.engine_stats()
keys = [f"b/{i}" for i in range(n)]
done = {}
size = None
ru0 = resource.getrusage(resource.RUSAGE_SELF)
t = time.perf_counter()
for k, v in s.iter_get(keys):
    done[k] = time.time()
    if size is None:
        size = len(v)
    assert v is not None and len(v) == size
dt = time.perf_counter() - t
ru1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime
after = c.engine_stats()
json.dump({"batch": dt, "done": done, "cpu": cpu,
           "hedges": after["hedges"] - before["hedges"],
           "hedges_won": after["hedges_won"] - before["hedges_won"],
           "requests": after["requests"] - before["requests"]}, open(out, "w"))
"""


def serve(port: int, index: int) -> None:
    """One fault server process (of several sharing a port), driven by lines on stdin
    (answers on stdout)."""
    from servers.faultserver import FaultServer

    srv = FaultServer(port=port, reuse_port=True).start()
    print(srv.url, flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "seed":
            n, size, warm = int(args[0]), int(args[1]), int(args[2])
            payload = os.urandom(size)
            for i in range(n):
                srv.put(f"/b/{i}", payload)
            for i in range(warm):
                srv.put(f"/w/{i}", payload)
        elif cmd == "slow":  # a draw per request: another process may see the hedge
            srv.set_slow(float(args[0]), float(args[1]), seed=int(args[2]) * 1000 + index,
                         random_draw=True)
        elif cmd == "clear":
            srv.clear_requests()
        elif cmd == "dump":  # {path: [arrival times]} of GETs under /b/
            times = {}
            for r in srv.requests(method="GET"):
                if r.path.startswith("/b/"):
                    times.setdefault(r.path[1:], []).append(r.time)
            with open(f"{args[0]}.{index}", "w") as f:
                json.dump(times, f)
        elif cmd == "quit":
            break
        print("ok", flush=True)
    srv.stop()


class Server:
    """`n` fault server processes on one port (SO_REUSEPORT: the kernel spreads the
    connections): one asyncio process would be the bottleneck."""

    def __init__(self, n):
        self.procs, self.url, port = [], None, 0
        for i in range(n):
            p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve",
                                  "--port", str(port), "--index", str(i)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.procs.append(p)
            url = p.stdout.readline().strip()
            if not url.startswith("http://"):
                raise RuntimeError(f"fault server did not start: {url!r}")
            self.url, port = url, int(url.rsplit(":", 1)[1])

    def call(self, *words):
        for p in self.procs:
            p.stdin.write(" ".join(str(w) for w in words) + "\n")
            p.stdin.flush()
        for p in self.procs:
            if p.stdout.readline().strip() != "ok":
                raise RuntimeError(f"fault server: {words} failed")

    def close(self):
        for p in self.procs:
            try:
                p.stdin.write("quit\n")
                p.stdin.flush()
                p.wait(10)
            except Exception:
                p.kill()


def pct(sorted_values, q):
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, int(round(q * len(sorted_values))) - 1))
    return sorted_values[i]


def run_one(server, args, tmp, hedge):
    out = os.path.join(tmp, "client.json")
    dump = os.path.join(tmp, "server.json")
    server.call("clear")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", CLIENT, server.url, str(args.objects),
                    str(args.concurrency), "1" if hedge else "0", str(args.warm), out],
                   check=True, env=env)
    server.call("dump", dump)
    with open(out) as f:
        client = json.load(f)
    arrivals = {}
    for i in range(len(server.procs)):
        with open(f"{dump}.{i}") as f:
            for k, ts in json.load(f).items():
                arrivals.setdefault(k, []).extend(ts)
    lat = sorted(client["done"][k] - min(ts) for k, ts in arrivals.items() if k in client["done"])
    gets = sum(len(ts) for ts in arrivals.values())
    gaps = sorted(sorted(ts)[1] - min(ts) for ts in arrivals.values() if len(ts) > 1)
    return {"batch": client["batch"], "lat": lat, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99),
            "p999": pct(lat, 0.999), "extra": gets - args.objects, "hedges": client["hedges"],
            "hedges_won": client["hedges_won"], "cpu": client["cpu"], "max": lat[-1] if lat else float("nan"),
            "gap": statistics.median(gaps) if gaps else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--servers", type=int, default=2, help="fault server processes")
    ap.add_argument("--objects", type=int, default=10000)
    ap.add_argument("--size", type=int, default=64 * 1024)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--slow", type=float, default=0.01, help="fraction of responses held back")
    ap.add_argument("--delay", type=float, default=1.0, help="seconds they are held back")
    ap.add_argument("--warm", type=int, default=1000, help="keys read first (other keys)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cdf", default=os.path.join(ROOT, "benchmarks", "plots", "hedge_cdf.csv"))
    ap.add_argument("--plot", default=os.path.join(ROOT, "benchmarks", "plots", "hedge_cdf.png"))
    args = ap.parse_args()
    if args.serve:
        serve(args.port, args.index)
        return
    server = Server(args.servers)
    results = {name: [] for name, _, _ in CONFIGS}
    try:
        server.call("seed", args.objects, args.size, args.warm)
        with tempfile.TemporaryDirectory(prefix="cfs-hedge-") as tmp:
            for rnd in range(args.rounds):
                for name, slow, hedge in CONFIGS:
                    server.call("slow", args.slow if slow else 0, args.delay, rnd + 1)
                    r = run_one(server, args, tmp, hedge)
                    results[name].append(r)
                    print(f"round {rnd + 1} {name:8s} batch {r['batch']:.3f} s  cpu {r['cpu']:.2f} s  p50 "
                          f"{r['p50'] * 1e3:.1f} ms  p99 {r['p99'] * 1e3:.1f} ms  p99.9 "
                          f"{r['p999'] * 1e3:.1f} ms  max {r['max'] * 1e3:.0f} ms  extra GETs {r['extra']}"
                          f" (median {r['gap'] * 1e3:.0f} ms after the first)  hedges "
                          f"{r['hedges']} (won {r['hedges_won']})", flush=True)
    finally:
        server.close()

    med = statistics.median
    load = os.getloadavg()
    print(f"\n{args.objects:,} x {args.size // 1024} KiB GETs, concurrency {args.concurrency}, "
          f"{args.servers} fault server processes, "
          f"{args.slow:.1%} of responses held back {args.delay:g} s; median of {args.rounds} "
          f"rounds; load average {load[0]:.1f} at the end")
    print("| configuration | batch s | x clean batch | client CPU s | p50 ms | p99 ms | p99.9 ms "
          "| max ms | extra GETs | hedges sent / won |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, _, _ in CONFIGS:
        rs = results[name]
        ratio = med([r["batch"] / c["batch"] for r, c in zip(rs, results["clean"])])
        print(f"| {name} | {med(r['batch'] for r in rs):.2f} | {ratio:.2f}x | "
              f"{med(r['cpu'] for r in rs):.2f} | "
              f"{med(r['p50'] for r in rs) * 1e3:.1f} | {med(r['p99'] for r in rs) * 1e3:.1f} | "
              f"{med(r['p999'] for r in rs) * 1e3:.1f} | {med(r['max'] for r in rs) * 1e3:.0f} | "
              f"{med(r['extra'] for r in rs):.0f} "
              f"({med(r['extra'] for r in rs) / args.objects:.1%}) | "
              f"{med(r['hedges'] for r in rs):.0f} / {med(r['hedges_won'] for r in rs):.0f} |")

    os.makedirs(os.path.dirname(args.cdf), exist_ok=True)
    # the last round's CDF, at fractions finer in the tail: 0.01..0.99, 0.991..0.999,
    # 0.9991..0.9999, 1 (the slowest key)
    fractions = ([i / 100 for i in range(1, 100)] + [0.99 + i / 1000 for i in range(1, 10)]
                 + [0.999 + i / 10000 for i in range(1, 10)] + [1.0])
    with open(args.cdf, "w") as f:
        f.write("# " + " ".join(sys.argv[1:]) + f" (last of {args.rounds} rounds)\n")
        f.write("configuration,fraction,latency_ms\n")
        for name, _, _ in CONFIGS:
            lat = results[name][-1]["lat"]
            for q in fractions:
                f.write(f"{name},{q:.4f},{pct(lat, q) * 1e3:.2f}\n")
    print(f"CDF data: {args.cdf}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not importable: no plot")
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, _, _ in CONFIGS:
        lat = results[name][-1]["lat"]
        ax.plot([v * 1e3 for v in lat], [(i + 1) / len(lat) for i in range(len(lat))], label=name)
    ax.set_xscale("log")
    ax.set_xlim(left=1)
    ax.set_xlabel("latency, ms (server receipt of the first request to value in hand)")
    ax.set_ylabel("fraction of keys")
    ax.set_ylim(0.95, 1.0005)
    ax.set_title(f"{args.objects:,} x {args.size // 1024} KiB GETs, {args.slow:.0%} held back "
                 f"{args.delay:g} s (tail)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    os.makedirs(os.path.dirname(args.plot), exist_ok=True)
    fig.savefig(args.plot, dpi=110, bbox_inches="tight")
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
