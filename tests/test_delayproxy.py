"""benchmarks/delayproxy.c: the loopback TCP proxy that adds round-trip time for the
benchmarks. Built with cc; checked against a real nginx."""
import os
import socket
import subprocess
import sys
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
    yield srv, body
    srv.stop()


def _get(port, path, n=1):
    """n GETs on one keep-alive connection; (bodies, seconds)."""
    s = socket.create_connection(("127.0.0.1", port))
    t = time.perf_counter()
    out = []
    buf = b""
    for _ in range(n):
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        head, buf = buf.split(b"\r\n\r\n", 1)
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
    srv, body = nginx_files
    with delayproxy.DelayProxy(f"127.0.0.1:{srv.port}", delay_ms=50) as px:
        bodies, dt = _get(px.port, "/big", n=3)
    assert all(b == body for b in bodies)
    assert dt >= 3 * 0.100  # three request/response round trips, 50 ms each way


def test_no_delay_is_fast_and_intact(nginx_files):
    srv, body = nginx_files
    with delayproxy.DelayProxy(f"127.0.0.1:{srv.port}", delay_ms=0) as px:
        bodies, dt = _get(px.port, "/big", n=2)
    assert all(b == body for b in bodies)
    assert dt < 5


def test_jitter_keeps_the_byte_order(nginx_files):
    srv, body = nginx_files
    with delayproxy.DelayProxy(f"127.0.0.1:{srv.port}", delay_ms=2, jitter_ms=20) as px:
        bodies, _ = _get(px.port, "/big", n=2)
    assert all(b == body for b in bodies)


def test_only_a_loopback_target_is_accepted():
    p = subprocess.run([delayproxy.build(), "--target", "10.0.0.1:80"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "127" in p.stderr


def test_listens_on_loopback_only(nginx_files):
    srv, _ = nginx_files
    with delayproxy.DelayProxy(f"127.0.0.1:{srv.port}", delay_ms=0) as px:
        listening = []  # local addresses of listening sockets on the proxy's port (/proc/net/tcp)
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                ip, port = local.split(":")
                if state == "0A" and int(port, 16) == px.port:
                    listening.append(socket.inet_ntoa(bytes.fromhex(ip)[::-1]))
    assert listening == ["127.0.0.1"]
