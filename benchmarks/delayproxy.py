"""Build and run benchmarks/delayproxy.c (round-trip latency on loopback; see the C file).

    from delayproxy import DelayProxy
    p = DelayProxy("127.0.0.1:8443", delay_ms=20, jitter_ms=0).start()   # p.port
    p.stop()

    python3 benchmarks/delayproxy.py --check   # wrk direct vs through the proxy at 0 ms

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
    "-fsanitize=address,undefined -g"); such a build goes to its own file."""
    extra = os.environ.get("DELAYPROXY_CFLAGS", "").split()
    binary = BIN + ("-" + hashlib.sha1(" ".join(extra).encode()).hexdigest()[:8] if extra else "")
    if not os.path.exists(binary) or os.path.getmtime(binary) < os.path.getmtime(SRC):
        os.makedirs(os.path.dirname(binary), exist_ok=True)
        subprocess.run([os.environ.get("CC", "cc"), "-O2", "-Wall", "-Wextra", *extra, "-o", binary + ".tmp", SRC],
                       check=True)
        os.replace(binary + ".tmp", binary)
    return binary


class DelayProxy:
    def __init__(self, target, delay_ms, jitter_ms=0, max_conns=8192):
        self.target, self.delay_ms, self.jitter_ms, self.max_conns = target, delay_ms, jitter_ms, max_conns
        self.proc = None
        self.port = None
        self.returncode = None

    def start(self):
        binary = build()
        self.proc = subprocess.Popen([binary, "--target", self.target, "--delay-ms", str(int(round(self.delay_ms))),
                                      "--jitter-ms", str(int(round(self.jitter_ms))),
                                      "--max-conns", str(self.max_conns)],
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


def check(duration=3, conc=(64, 256)):
    """wrk's 64 KiB GET rate straight to nginx and through the proxy at 0 ms, http and https."""
    import tempfile

    sys.path.insert(0, os.path.dirname(HERE))
    sys.path.insert(0, HERE)
    import wrk_client
    from tests.servers.nginx import NginxServer

    with tempfile.TemporaryDirectory(prefix="cfs-dp-") as d:
        os.makedirs(os.path.join(d, "b"))
        for i in range(256):
            with open(os.path.join(d, "b", f"{i:04d}"), "wb") as f:
                f.write(os.urandom(65536))
        os.chmod(d, 0o755)
        paths = [f"/b/{i:04d}" for i in range(256)]
        with NginxServer(root=d, tls=True) as srv:
            for scheme, port in (("http", srv.port), ("https", srv.tls_port)):
                with DelayProxy(f"127.0.0.1:{port}", 0) as px:
                    for c in conc:
                        direct = wrk_client.run(os.path.join(d, "w"), f"{scheme}://127.0.0.1:{port}", paths, c, duration, 65536)
                        cpu0 = px.cpu_s()
                        via = wrk_client.run(os.path.join(d, "w"), f"{scheme}://127.0.0.1:{px.port}", paths, c, duration, 65536)
                        pcpu = px.cpu_s() - cpu0
                        rd = direct["requests"] / direct["wall_s"]
                        rv = via["requests"] / via["wall_s"]
                        print(f"{scheme:5} c={c:<4} wrk direct {rd:8.0f} req/s  via proxy (0 ms) {rv:8.0f} req/s "
                              f"({rv / rd:.0%}; proxy cpu {pcpu / via['wall_s']:.0%} of a core)", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        check()
    else:
        sys.exit(__doc__)
