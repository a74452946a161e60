"""benchmarks/delayproxy.c: the loopback TCP proxy that adds round-trip time for the
benchmarks. Built with cc; checked against a real nginx. Both paths are covered: the
zero-delay splice() path and the copy path (any delay, or --splice 0).

DELAYPROXY_CFLAGS="-fsanitize=address,undefined -g" runs these against a sanitizer build;
every test then also checks the proxy exited 0 (no finding, no leak)."""
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from servers.nginx import NginxServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import delayproxy  # noqa: E402


@pytest.fixture(scope="module")
def nginx_files():
    srv = NginxServer(tls=False).start()
    body = os.urandom(3 * 1024 * 1024 + 17)  # several MiB: more than the proxy's 1 MiB hold
    with open(os.path.join(srv.root, "big"), "wb") as f:
        f.write(body)
    small = os.urandom(1000)
    with open(os.path.join(srv.root, "small"), "wb") as f:
        f.write(small)
    yield srv, body, small
    srv.stop()


class Proxy(delayproxy.DelayProxy):
    """A DelayProxy that must exit 0 when stopped (a sanitizer build exits non-zero on findings)."""

    def __exit__(self, *exc):
        self.stop()
        assert self.returncode == 0, f"delayproxy exited {self.returncode}"


def _get(port, path, n=1):
    """n GETs on one keep-alive connection; (bodies, seconds)."""
    s = socket.create_connection(("127.0.0.1", port))
    t = time.perf_counter()
    out = []
    buf = b""
    for _ in range(n):
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            assert chunk, "connection closed early"
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200"), head[:100]
        length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0].split(b":")[1])
        while len(buf) < length:
            chunk = s.recv(1 << 20)
            assert chunk, "connection closed early"
            buf += chunk
        out.append(buf[:length])
        buf = buf[length:]
    dt = time.perf_counter() - t
    s.close()
    return out, dt


def test_bytes_pass_intact_and_each_round_trip_is_delayed(nginx_files):
    srv, body, _ = nginx_files
    with Proxy(f"127.0.0.1:{srv.port}", delay_ms=50) as px:
        bodies, dt = _get(px.port, "/big", n=3)
    assert all(b == body for b in bodies)
    assert dt >= 3 * 0.100  # three request/response round trips, 50 ms each way


def test_a_small_request_takes_one_round_trip_of_delay(nginx_files):
    srv, _, small = nginx_files
    with Proxy(f"127.0.0.1:{srv.port}", delay_ms=30) as px:
        _get(px.port, "/small")  # warm nginx
        times = []
        for _ in range(3):
            bodies, dt = _get(px.port, "/small", n=2)  # connect (1 RTT) + 2 GETs (1 RTT each)
            assert bodies == [small, small]
            times.append(dt)
    # 2 x 30 ms each way per GET; the connect to the proxy itself is not delayed
    assert 0.120 <= min(times) < 0.120 + 0.5


@pytest.mark.parametrize("splice", [1, 0])
def test_no_delay_is_fast_and_intact(nginx_files, splice):
    srv, body, small = nginx_files
    with Proxy(f"127.0.0.1:{srv.port}", delay_ms=0, extra_args=["--splice", splice]) as px:
        bodies, dt = _get(px.port, "/big", n=2)
        smalls, dt_small = _get(px.port, "/small", n=50)
    assert all(b == body for b in bodies)
    assert smalls == [small] * 50
    assert dt < 5
    assert dt_small < 1  # 50 round trips: nothing is held for a timer tick


@pytest.mark.parametrize("threads", [1, 2])
def test_many_connections_at_once_keep_their_bytes(nginx_files, threads):
    srv, body, small = nginx_files
    errors = []

    def worker(port, path, want):
        try:
            got, _ = _get(port, path, n=2)
            if got != [want, want]:
                errors.append("bytes differ")
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    for delay in (0, 3):
        opts = ["--max-buffer", 65536, "--threads", threads]
        with Proxy(f"127.0.0.1:{srv.port}", delay_ms=delay, extra_args=opts) as px:
            clients = [threading.Thread(target=worker, args=(px.port, "/big" if i % 4 == 0 else "/small",
                                                             body if i % 4 == 0 else small)) for i in range(24)]
            for t in clients:
                t.start()
            for t in clients:
                t.join(60)
    assert errors == []


def test_jitter_keeps_the_byte_order(nginx_files):
    srv, body, _ = nginx_files
    with Proxy(f"127.0.0.1:{srv.port}", delay_ms=2, jitter_ms=20) as px:
        bodies, _ = _get(px.port, "/big", n=2)
    assert all(b == body for b in bodies)


@pytest.mark.parametrize("threads", [1, 2])
def test_max_conns_closes_the_extra_connection(nginx_files, threads):
    srv, _, small = nginx_files
    with Proxy(f"127.0.0.1:{srv.port}", delay_ms=0, max_conns=2, extra_args=["--threads", threads]) as px:
        held = [socket.create_connection(("127.0.0.1", px.port)) for _ in range(2)]
        time.sleep(0.2)  # let the proxy accept both
        extra = socket.create_connection(("127.0.0.1", px.port))
        extra.settimeout(5)
        try:
            assert extra.recv(1) == b""  # accepted and closed at once
        except ConnectionResetError:
            pass
        extra.close()
        for s in held:  # the two within the limit still work
            s.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(5)
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
            s.close()
        time.sleep(0.2)  # their slots free up
        assert _get(px.port, "/small")[0] == [small]


@pytest.mark.parametrize("delay_ms", [0, 5])
def test_a_stalled_receiver_bounds_what_the_proxy_takes(delay_ms):
    """The target never reads: the proxy stops reading from the client once it holds
    max-buffer bytes (plus what the kernel buffers), instead of taking all that is sent."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    with Proxy(f"127.0.0.1:{lsock.getsockname()[1]}", delay_ms=delay_ms, extra_args=["--max-buffer", 65536]) as px:
        c = socket.create_connection(("127.0.0.1", px.port))
        up, _ = lsock.accept()  # never read from
        c.setblocking(False)
        block = b"x" * 65536
        sent, idle_since = 0, None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sent < 256 << 20:
            try:
                sent += c.send(block)
                idle_since = None
            except BlockingIOError:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 0.5:
                    break  # nobody takes more
                time.sleep(0.01)
        # loopback kernel buffers can hold a few MiB each side; 256 MiB would mean no bound
        assert sent < 64 << 20, sent
        with open(f"/proc/{px.proc.pid}/status") as f:
            rss_kib = int([ln for ln in f if ln.startswith("VmRSS:")][0].split()[1])
        c.close()
        up.close()
    lsock.close()
    assert rss_kib < 64 * 1024  # the proxy's own memory stays small (ASan builds included)


def test_only_a_loopback_target_is_accepted():
    p = subprocess.run([delayproxy.build(), "--target", "10.0.0.1:80"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "127" in p.stderr


def test_bad_options_are_refused():
    for args in (["--target", "127.0.0.1:80", "--splice", "2"], ["--target", "127.0.0.1:80", "--max-buffer", "10"],
                 ["--target", "127.0.0.1:80", "--delay-ms"], ["--target", "127.0.0.1:80", "--threads", "0"]):
        p = subprocess.run([delayproxy.build(), *args], capture_output=True, text=True, timeout=10)
        assert p.returncode == 2 and "usage" in p.stderr, args


def test_listens_on_loopback_only(nginx_files):
    srv, _, _ = nginx_files
    with Proxy(f"127.0.0.1:{srv.port}", delay_ms=0) as px:
        listening = []  # local addresses of listening sockets on the proxy's port (/proc/net/tcp)
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                ip, port = local.split(":")
                if state == "0A" and int(port, 16) == px.port:
                    listening.append(socket.inet_ntoa(bytes.fromhex(ip)[::-1]))
    assert listening == ["127.0.0.1"]


def test_out_of_descriptors_refuses_connections_without_spinning(nginx_files):
    """At EMFILE the proxy gives up a reserve descriptor to accept and close the newcomer
    (as at max-conns) instead of leaving it in the backlog for epoll to report forever."""
    import resource

    srv, _, small = nginx_files

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))

    proc = subprocess.Popen([delayproxy.build(), "--target", f"127.0.0.1:{srv.port}", "--delay-ms", "0"],
                            stdout=subprocess.PIPE, text=True, preexec_fn=low_limit)
    try:
        port = int(proc.stdout.readline().split()[1])
        held = []
        for _ in range(30):  # more than 32 descriptors allow (2 a connection)
            s = socket.create_connection(("127.0.0.1", port))
            s.settimeout(5)
            held.append(s)
        time.sleep(0.3)
        with open(f"/proc/{proc.pid}/stat") as f:
            f0 = f.read().rsplit(")", 1)[1].split()
        time.sleep(1)
        with open(f"/proc/{proc.pid}/stat") as f:
            f1 = f.read().rsplit(")", 1)[1].split()
        cpu = (int(f1[11]) + int(f1[12]) - int(f0[11]) - int(f0[12])) / os.sysconf("SC_CLK_TCK")
        assert cpu < 0.3, f"{cpu} s of CPU in 1 s: spinning on the listening socket"
        closed = 0
        for s in reversed(held):  # the last ones came after the descriptors ran out
            s.settimeout(0.5)
            try:
                closed += s.recv(1) == b""
            except (ConnectionResetError, socket.timeout):
                pass
            if closed:
                break
        assert closed, "no connection was refused"
        for s in held:
            s.close()
        time.sleep(0.3)
        assert _get(port, "/small")[0] == [small]  # works again once descriptors are free
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
