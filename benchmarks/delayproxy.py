"""Build and run benchmarks/delayproxy.c (round-trip latency on loopback; see the C file).

    from delayproxy import DelayProxy
    p = DelayProxy("127.0.0.1:8443", delay_ms=20, jitter_ms=0).start()   # p.port
    p.stop()

    python3 benchmarks/delayproxy.py --check   # wrk direct vs through the proxy at 0 ms
    python3 benchmarks/delayproxy.py --check --splice 0 --runs 5 --schemes http

Built with the system cc into benchmarks/results/ (gitignored) when the source is newer.
"""
import hashlib
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "delayproxy.c")
BIN = os.path.join(HERE, "results", "delayproxy")


def build():
    """The binary, rebuilt when the source is newer. DELAYPROXY_CFLAGS adds flags (for example
    "-fsanitize=address,undefined -g"); such a build goes to its own file. DELAYPROXY_BIN
    names a prebuilt binary to use instead (to compare builds)."""
    if os.environ.get("DELAYPROXY_BIN"):
        return os.environ["DELAYPROXY_BIN"]
    extra = os.environ.get("DELAYPROXY_CFLAGS", "").split()
    binary = BIN + ("-" + hashlib.sha1(" ".join(extra).encode()).hexdigest()[:8] if extra else "")
    if not os.path.exists(binary) or os.path.getmtime(binary) < os.path.getmtime(SRC):
        os.makedirs(os.path.dirname(binary), exist_ok=True)
        subprocess.run([os.environ.get("CC", "cc"), "-O2", "-Wall", "-Wextra", "-pthread", *extra, "-o", binary + ".tmp", SRC],
                       check=True)
        os.replace(binary + ".tmp", binary)
    return binary


class DelayProxy:
    def __init__(self, target, delay_ms, jitter_ms=0, max_conns=8192, extra_args=()):
        """extra_args: more delayproxy options, for example ["--max-buffer", "65536"]."""
        self.target, self.delay_ms, self.jitter_ms, self.max_conns = target, delay_ms, jitter_ms, max_conns
        self.extra_args = [str(a) for a in extra_args]
        self.proc = None
        self.port = None
        self.returncode = None

    def start(self):
        binary = build()
        self.proc = subprocess.Popen([binary, "--target", self.target, "--delay-ms", str(int(round(self.delay_ms))),
                                      "--jitter-ms", str(int(round(self.jitter_ms))),
                                      "--max-conns", str(self.max_conns), *self.extra_args],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"delayproxy did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def cpu_s(self):
        """CPU seconds the proxy used so far (utime + stime from /proc)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        """Stop it; self.returncode is its exit status (0 after a clean SIGTERM; a sanitizer
        build exits non-zero on a finding, leaks included)."""
        if self.proc:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.returncode = self.proc.returncode
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def check(duration=3, conc=(64, 256), runs=3, schemes=("http", "https"), splice=True, threads=1):
    """Is the proxy the bottleneck? wrk's 64 KiB GET rate straight to nginx and through the
    proxy at 0 ms, http and https, alternating direct and via `runs` times; prints the
    medians, the median of the per-pair ratios, and the proxy's CPU per 1,000 requests."""
    import tempfile

    sys.path.insert(0, os.path.dirname(HERE))
    sys.path.insert(0, HERE)
    import wrk_client
    from tests.servers.nginx import NginxServer

    if not wrk_client.available():
        sys.exit("delayproxy --check: wrk is not installed")
    what = f"binary {os.environ['DELAYPROXY_BIN']}" if os.environ.get("DELAYPROXY_BIN") else \
        f"{'splice' if splice else 'copy'} path"
    print(f"delayproxy --check: 64 KiB GETs, wrk -t2, {duration} s x {runs} runs per cell, proxy at 0 ms "
          f"({what}, {threads} thread{'s' if threads > 1 else ''}), {os.cpu_count()} cores, "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="cfs-dp-") as d:
        os.makedirs(os.path.join(d, "b"))
        for i in range(256):
            with open(os.path.join(d, "b", f"{i:04d}"), "wb") as f:
                f.write(os.urandom(65536))
        os.chmod(d, 0o755)
        paths = [f"/b/{i:04d}" for i in range(256)]
        with NginxServer(root=d, tls=True) as srv:
            for scheme in schemes:
                port = srv.port if scheme == "http" else srv.tls_port
                with DelayProxy(f"127.0.0.1:{port}", 0, extra_args=([] if splice else ["--splice", "0"]) + (["--threads", threads] if threads != 1 else [])) as px:
                    for c in conc:
                        rd, rv, ratio, cpu_k, cores = [], [], [], [], []
                        for _ in range(runs):
                            direct = wrk_client.run(os.path.join(d, "w"), f"{scheme}://127.0.0.1:{port}", paths, c,
                                                    duration, 65536)
                            cpu0 = px.cpu_s()
                            via = wrk_client.run(os.path.join(d, "w"), f"{scheme}://127.0.0.1:{px.port}", paths, c,
                                                 duration, 65536)
                            pcpu = px.cpu_s() - cpu0
                            for r in (direct, via):
                                if "fatal" in r or r["errors"]:
                                    sys.exit(f"delayproxy --check: wrk failed: {r.get('fatal') or r['errors']} errors")
                            rd.append(direct["requests"] / direct["wall_s"])
                            rv.append(via["requests"] / via["wall_s"])
                            ratio.append(rv[-1] / rd[-1])
                            cpu_k.append(pcpu / via["requests"] * 1000)
                            cores.append(pcpu / via["wall_s"])
                        row = dict(scheme=scheme, conc=c, direct=_median(rd), via=_median(rv), ratio=_median(ratio),
                                   ratio_min=min(ratio), ratio_max=max(ratio), cpu_ms_per_1k=_median(cpu_k) * 1000,
                                   cores=_median(cores))
                        rows.append(row)
                        print(f"{scheme:5} c={c:<4} direct {row['direct']:8.0f} req/s  via proxy {row['via']:8.0f} req/s  "
                              f"ratio {row['ratio']:4.0%} (runs {row['ratio_min']:.0%}-{row['ratio_max']:.0%})  "
                              f"proxy {row['cpu_ms_per_1k']:5.1f} ms CPU per 1,000 req, {row['cores']:.2f} core",
                              flush=True)
    print(f"(medians of {runs}; ratio = median of per-run via/direct; load "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})", flush=True)
    return rows


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="wrk direct vs through the proxy at 0 ms")
    ap.add_argument("--runs", type=int, default=3, help="alternating direct/via runs per cell (default 3)")
    ap.add_argument("--duration", type=float, default=3, help="seconds per wrk run (default 3)")
    ap.add_argument("--concurrency", default="64,256", help="wrk connections, comma-separated (default 64,256)")
    ap.add_argument("--schemes", default="http,https", help="http, https or both (default)")
    ap.add_argument("--splice", type=int, choices=(0, 1), default=1,
                    help="1: the zero-delay splice() path (default); 0: the copy path, for comparison")
    ap.add_argument("--threads", type=int, default=1, help="proxy event loops (default 1)")
    args = ap.parse_args(argv)
    if not args.check:
        ap.error("nothing to do: pass --check")
    check(duration=args.duration, conc=[int(x) for x in args.concurrency.split(",")], runs=args.runs,
          schemes=args.schemes.split(","), splice=bool(args.splice), threads=args.threads)


if __name__ == "__main__":
    main()
