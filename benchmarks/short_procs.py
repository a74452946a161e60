#!/usr/bin/env python3
"""Many short processes (the dask pattern): each fresh process imports a client, reads a few
objects over TLS and exits.

    python3 benchmarks/short_procs.py [--procs 200] [--objects 20] [--clients a,b,...] [--delay-ms 0]
                                      [--system-cas]

Per client, `--procs` processes one after another, each reading `--objects` 64 KiB objects
(its own keys) from nginx over HTTPS (TLS 1.3, the test CA, which every client verifies):
the first object alone (time to first byte: import, engine start, TCP + TLS handshake, one
GET), then the rest in one batch. Reports the medians of: interpreter start to client
ready (imports + set-up), ready to first byte, first byte to done, and the whole process as
the parent saw it (spawn to exit), and the loop's total. Clients run interleaved (one process
of each in turn) so load drift hits all alike. With --delay-ms the delay proxy sits in front.
Results: benchmarks/results/short-procs-*.json and a markdown table on stdout.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)

CHILD = r"""
import time
t0 = time.perf_counter()
import json, sys
sys.path.insert(0, sys.argv[1])
import worker
spec = json.loads(sys.argv[2])
worker.CA_FILE = spec["ca_file"]
cls = worker.CLIENTS[spec["client"]]
cli = cls(spec["base_url"], spec["concurrency"])
t1 = time.perf_counter()
keys = spec["keys"]
first = cli.get_many(keys[:1])
assert len(first[keys[0]]) == spec["size"]
t2 = time.perf_counter()
rest = cli.get_many(keys[1:])
assert len(rest) == len(keys) - 1 and all(len(v) == spec["size"] for v in rest.values())
t3 = time.perf_counter()
print(json.dumps({"ready_s": t1 - t0, "ttfb_s": t2 - t1, "rest_s": t3 - t2}))
"""

DEFAULT_CLIENTS = "cloudfiles_store,tensorstore,obstore,fsspec_http,cloud-files"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--procs", type=int, default=200)
    ap.add_argument("--objects", type=int, default=20)
    ap.add_argument("--clients", default=DEFAULT_CLIENTS)
    ap.add_argument("--delay-ms", type=float, default=0)
    ap.add_argument("--system-cas", action="store_true",
                    help="every client trusts the system CA bundle with the test CA appended (as against a real cloud)")
    ap.add_argument("--data-dir", default=os.path.join(HERE, ".data"))
    args = ap.parse_args()
    import datasets
    import run
    from tests.servers.nginx import NginxServer

    data = datasets.Data(args.data_dir)
    nkeys = min(datasets.OBJECT_SETS["o64k"][1], args.procs * args.objects)
    keys, _ = data.ensure_objects("o64k", nkeys, log=print)
    clients = args.clients.split(",")
    res = {c: [] for c in clients}
    with NginxServer(root=data.root, tls=True, workers=2) as srv:
        ca_file = run.system_and_test_cas(srv.ca_file, args.data_dir) if args.system_cas else srv.ca_file
        env = run.worker_env(ca_file)
        port = srv.tls_port
        proxy = None
        if args.delay_ms:
            import delayproxy

            proxy = delayproxy.DelayProxy(f"127.0.0.1:{port}", args.delay_ms).start()
            port = proxy.port
        base = f"https://127.0.0.1:{port}/bucket/o64k"
        try:
            for i in range(args.procs):
                ks = [keys[(i * args.objects + j) % nkeys] for j in range(args.objects)]
                for c in clients[i % len(clients):] + clients[:i % len(clients)]:
                    spec = {"client": c, "base_url": base, "concurrency": args.objects, "keys": ks,
                            "size": datasets.OBJECT_SETS["o64k"][0], "ca_file": ca_file}
                    t = time.perf_counter()
                    p = subprocess.run([sys.executable, "-c", CHILD, HERE, json.dumps(spec)],
                                       capture_output=True, text=True, env=env, cwd=HERE, timeout=120)
                    wall = time.perf_counter() - t
                    if p.returncode != 0:
                        res[c].append({"error": (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]})
                        continue
                    r = json.loads(p.stdout.strip().splitlines()[-1])
                    r["wall_s"] = wall
                    res[c].append(r)
        finally:
            if proxy:
                proxy.stop()
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    out = os.path.join(HERE, "results", f"short-procs-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(out, "w") as f:
        json.dump({"args": vars(args), "loadavg": os.getloadavg(), "results": res}, f, indent=1)
    print(f"\n{args.procs} processes x {args.objects} x 64 KiB over TLS"
          f"{f', {args.delay_ms:g} ms each way' if args.delay_ms else ''}"
          f"{', trusting the system CAs' if args.system_cas else ''} per client (medians, ms)\n")
    print("| client | ready (import + set-up) | first byte after ready | rest (19 GETs) | process wall | loop total s | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for c in clients:
        ok = [r for r in res[c] if "error" not in r]
        errs = len(res[c]) - len(ok)
        if not ok:
            print(f"| {c} | | | | | | {errs}: {res[c][0]['error']} |")
            continue
        m = lambda k: 1000 * statistics.median(r[k] for r in ok)  # noqa: E731
        total = sum(r["wall_s"] for r in ok)
        print(f"| {c} | {m('ready_s'):.0f} | {m('ttfb_s'):.1f} | {m('rest_s'):.1f} | {m('wall_s'):.0f} | {total:.1f} | {errs} |")
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
