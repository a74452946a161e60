"""What a new TLS connection costs. New connections of a store, and of another store in the
same process, resume the TLS session an earlier connection got (the engine's shared session
cache) instead of a full handshake; and they verify the server with the CA store parsed
once, not by reading the CA file again. nginx logs $ssl_session_reused per request, and
closes every connection after one request (keepalive_requests 1), so each request is a new
connection and a new TLS handshake."""
import json
import os
import subprocess
import sys

import pytest

from servers.nginx import NginxServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def nginx_one_request():
    srv = NginxServer(tls=True, access_log=True, keepalive_requests=1,
                      access_log_format="$ssl_session_reused $connection $request_uri")
    srv.start()
    d = os.path.join(srv.root, "tls")
    os.makedirs(d, exist_ok=True)
    for i in range(40):
        with open(os.path.join(d, f"k{i}"), "wb") as f:
            f.write(b"x" * 1000 + str(i).encode())
    yield srv
    srv.stop()


def _log(srv):
    with open(srv.access_log_path) as f:
        rows = [ln.split() for ln in f if "/tls/" in ln]
    open(srv.access_log_path, "w").close()  # the next test's rows only
    return rows


# A fresh process: its engine has no TLS session yet. One request first (a full handshake);
# then 12 one after another from the same store, then 12 from a second store with other
# options, each on a new connection. (16 handshakes started at once all offer the one
# session the share holds; with libcurl 7.88 and nginx only part of them resume, so the
# test keeps to requests one at a time, where resumption is deterministic.)
CHILD = r"""
import sys, cloudfiles_store as c
url, ca = sys.argv[1], sys.argv[2]
a = c.CloudFilesStore(url, concurrency=16, ca_bundle=ca)
assert a["k0"].endswith(b"0")
for i in range(1, 13):
    assert a[f"k{i}"].endswith(str(i).encode())
b = c.CloudFilesStore(url, concurrency=8, ca_bundle=ca, retries=2)
for i in range(13, 25):
    assert b[f"k{i}"].endswith(str(i).encode())
"""


def test_new_connections_resume_the_tls_session(nginx_one_request):
    srv = nginx_one_request
    p = subprocess.run([sys.executable, "-c", CHILD, srv.tls_url + "/tls", srv.ca_file],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = _log(srv)
    assert len(rows) == 25, rows
    assert len({conn for _, conn, _ in rows}) == 25  # a new connection for every request
    first = [r for r in rows if r[2].endswith("/k0")]
    assert first[0][0] == "."  # the first connection had no session to resume
    rest = [r for r in rows if not r[2].endswith("/k0")]
    full = [r for r in rest if r[0] != "r"]
    assert not full, f"{len(full)} of 24 later connections made a full handshake: {full}"


def test_wrong_ca_still_refused_after_a_resumed_session(nginx_one_request):
    """A session got with the right CA is not used to skip verification for a store that
    trusts another CA."""
    srv = nginx_one_request
    code = r"""
import sys, cloudfiles_store as c
from cloudfiles_store import errors
url, ca, wrong = sys.argv[1:4]
assert c.CloudFilesStore(url, ca_bundle=ca)["k1"]
try:
    c.CloudFilesStore(url, ca_bundle=wrong, retries=0)["k2"]
except Exception as e:
    print(type(e).__name__)
else:
    print("READ")
"""
    p = subprocess.run([sys.executable, "-c", code, srv.tls_url + "/tls", srv.ca_file, srv.wrong_ca_file],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() not in ("READ", "KeyError"), p.stdout


# A fresh process on one CPU (so one lane, one CA store). After the first request, 12 more,
# each on a new connection; /proc/self/io counts the bytes the process read meanwhile.
CA_READS = r"""
import json, os, sys
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
import cloudfiles_store as c
url, ca = sys.argv[1], sys.argv[2]
def read_bytes():
    with open("/proc/self/io") as f:
        return int(next(ln for ln in f if ln.startswith("rchar")).split()[1])
s = c.CloudFilesStore(url, concurrency=4, retries=1, **({"ca_bundle": ca} if ca else {}))
def get(k):
    try:
        return "ok" if s[k] == b"x" * 1000 + k[1:].encode() else "wrong value"
    except Exception as e:
        return type(e).__name__
first = get("k0")
before = read_bytes()
rest = [get(f"k{i}") for i in range(1, 13)]
print(json.dumps({"first": first, "rest": rest, "read": read_bytes() - before}))
"""


def _ca_reads(srv, ca):
    p = subprocess.run([sys.executable, "-c", CA_READS, srv.tls_url + "/tls", ca or ""],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_new_connections_do_not_read_the_ca_bundle_again(nginx_one_request, tmp_path):
    """The CA file is parsed once per lane, not per connection: libcurl caches the store only
    when no CA directory is set, and Debian's libcurl sets /etc/ssl/certs by default."""
    srv = nginx_one_request
    bundle = tmp_path / "bundle.pem"
    pad = "# padding outside any PEM block, read and skipped by the parser\n" * 4096  # 256 KiB
    bundle.write_text(pad + open(srv.ca_file).read())
    size = bundle.stat().st_size
    got = _ca_reads(srv, str(bundle))
    assert got["first"] == "ok" and got["rest"] == ["ok"] * 12, got
    _log(srv)
    # 12 new connections: a re-read each would be 12 x 256 KiB; responses and handshakes are
    # a few KiB each.
    assert got["read"] < size, f"read {got['read']} bytes in 12 connections; the bundle is {size}"


def test_the_system_bundle_is_parsed_once(nginx_one_request):
    """Without ca_bundle the store trusts libcurl's built-in CA file (the system bundle),
    parsed once. The test server's CA is not in it, so every request is refused."""
    srv = nginx_one_request
    system = "/etc/ssl/certs/ca-certificates.crt"
    assert os.path.getsize(system) > 64 * 1024, "the ca-certificates package is not installed"
    got = _ca_reads(srv, None)
    _log(srv)
    assert got["first"] not in ("ok", "wrong value", "KeyError"), got
    assert all(r == got["first"] for r in got["rest"]), got
    assert got["read"] < os.path.getsize(system), f"read {got['read']} bytes in 12 connections"
