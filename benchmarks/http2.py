"""HTTP/1.1 against HTTP/2 (the store's http2 option) over TLS to the same loopback nginx.

    python3 benchmarks/http2.py [--objects 10000] [--size 65536] [--concurrency 64] [--rounds 5]

Each measurement runs in a fresh process (its own engine and connections), the two
protocols alternating round by round; prints objects/s per round, the median, and the
connections each opened. This decided the default (HTTP/1.1: faster here).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from servers.nginx import NginxServer  # noqa: E402

CHILD = r"""
import sys, time, cloudfiles_store as c
url, ca, h2, n, conc = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4]), int(sys.argv[5])
keys = [str(i) for i in range(n)]
s = c.CloudFilesStore(url, concurrency=conc, ca_bundle=ca, http2=h2)
s.getitems(keys[: min(n, 4 * conc)])  # warm-up: connections made, TLS done
t = time.perf_counter()
got = sum(1 for _, v in s.iter_get(keys) if v is not None)
dt = time.perf_counter() - t
assert got == n
print(n / dt, c.engine_stats()["connections"])
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=10000)
    ap.add_argument("--size", type=int, default=64 * 1024)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cfs-h2-") as data:
        os.makedirs(os.path.join(data, "b"))
        payload = os.urandom(args.size)
        for i in range(args.objects):
            with open(os.path.join(data, "b", str(i)), "wb") as f:
                f.write(payload)
        os.chmod(data, 0o755)
        results = {"HTTP/1.1": [], "HTTP/2": []}
        with NginxServer(root=data, tls=True) as nginx:
            for rnd in range(args.rounds):
                for name, flag in (("HTTP/1.1", "0"), ("HTTP/2", "1")):
                    run = subprocess.run(
                        [sys.executable, "-c", CHILD, nginx.tls_url + "/b", nginx.ca_file, flag,
                         str(args.objects), str(args.concurrency)],
                        capture_output=True, text=True, check=True)
                    rate, conns = run.stdout.split()
                    results[name].append((float(rate), int(conns)))
                    print(f"round {rnd} {name:8} {float(rate):9.0f} objects/s, {conns} connections")
        for name, runs in results.items():
            rates = [r for r, _ in runs]
            print(f"{name:8} median {statistics.median(rates):9.0f} objects/s "
                  f"(min {min(rates):.0f}, max {max(rates):.0f})")


if __name__ == "__main__":
    main()
