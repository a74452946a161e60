"""The test servers themselves work: nginx (http, https, dav, JSON autoindex) and the
fault server (storage, ranges, listing, every fault). Plain urllib / http.client / sockets,
no cloudfiles_store."""
import http.client
import json
import os
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from servers import FaultServer, NginxServer


def _req(url, method="GET", data=None, headers=None, context=None, timeout=10):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, context=context, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def q(path):
    return urllib.parse.quote(path, safe="/")


# ---------------------------------------------------------------------------- nginx

@pytest.fixture
def nprefix(nginx):
    return "/" + uuid.uuid4().hex


def test_nginx_put_get_delete(nginx, nprefix):
    url = nginx.url + nprefix + "/dir/sub/obj"
    status, _, _ = _req(url, "PUT", b"hello world")
    assert status == 201
    status, hdrs, body = _req(url)
    assert (status, body) == (200, b"hello world")
    assert hdrs["Content-Length"] == "11"
    status, _, _ = _req(url, "PUT", b"replaced")
    assert status == 204
    assert _req(url)[2] == b"replaced"
    assert _req(url, "HEAD")[0] == 200
    assert _req(url, "DELETE")[0] == 204
    assert _req(url)[0] == 404
    assert _req(url, "DELETE")[0] == 404
    # the file landed under the data root, readable by us
    _req(url, "PUT", b"x")
    with open(os.path.join(nginx.root, nprefix.lstrip("/"), "dir", "sub", "obj"), "rb") as f:
        assert f.read() == b"x"


def test_nginx_empty_and_large_bodies(nginx, nprefix):
    url = nginx.url + nprefix + "/empty"
    assert _req(url, "PUT", b"")[0] == 201
    assert _req(url)[:1] == (200,) and _req(url)[2] == b""
    big = os.urandom(3 << 20)
    url = nginx.url + nprefix + "/big"
    assert _req(url, "PUT", big)[0] == 201
    assert _req(url)[2] == big


def test_nginx_ranges(nginx, nprefix):
    data = bytes(range(256)) * 4
    url = nginx.url + nprefix + "/r"
    _req(url, "PUT", data)
    status, hdrs, body = _req(url, headers={"Range": "bytes=10-19"})
    assert (status, body) == (206, data[10:20])
    assert hdrs["Content-Range"] == "bytes 10-19/1024"
    assert _req(url, headers={"Range": "bytes=1000-"})[2] == data[1000:]
    assert _req(url, headers={"Range": "bytes=-24"})[2] == data[-24:]
    assert _req(url, headers={"Range": "bytes=1000-5000"})[2] == data[1000:]
    assert _req(url, headers={"Range": "bytes=-5000"})[2] == data
    assert _req(url, headers={"Range": "bytes=1024-"})[0] == 416
    assert _req(url, headers={"Range": "bytes=2000-3000"})[0] == 416


def test_nginx_json_listing(nginx, nprefix):
    names = ["a", "b b", "c+d", "e%f", "g#h", "i?j", "k~l", "m=n", "ünï", "日本"]
    for n in names:
        assert _req(nginx.url + q(f"{nprefix}/{n}"), "PUT", n.encode())[0] == 201
    _req(nginx.url + q(f"{nprefix}/sub/x"), "PUT", b"1")
    _req(nginx.url + q(f"{nprefix}/.hidden"), "PUT", b"1")
    status, hdrs, body = _req(nginx.url + nprefix + "/")
    assert status == 200
    listing = json.loads(body)
    files = {e["name"]: e for e in listing if e["type"] == "file"}
    dirs = {e["name"] for e in listing if e["type"] == "directory"}
    assert set(files) == set(names)  # nginx's autoindex hides names starting with "."
    assert dirs == {"sub"}
    assert all(files[n]["size"] == len(n.encode()) for n in names)
    for n in names:
        assert _req(nginx.url + q(f"{nprefix}/{n}"))[2] == n.encode()
    # a directory without its slash redirects; a missing directory is 404
    assert _req(nginx.url + nprefix + "/nothing/")[0] == 404
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
    conn.request("GET", nprefix + "/sub")
    r = conn.getresponse()
    r.read()
    assert r.status == 301
    conn.close()


def test_nginx_keepalive_many_requests(nginx, nprefix):
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
    for i in range(200):
        conn.request("PUT", f"{nprefix}/k{i}", body=b"v%d" % i)
        r = conn.getresponse()
        r.read()
        assert r.status == 201
    sock = conn.sock
    for i in range(200):
        conn.request("GET", f"{nprefix}/k{i}")
        r = conn.getresponse()
        assert r.read() == b"v%d" % i
    assert conn.sock is sock  # one connection throughout
    conn.close()


def test_nginx_tls(nginx, nprefix):
    url = nginx.tls_url + nprefix + "/t"
    ctx = ssl.create_default_context(cafile=nginx.ca_file)
    assert _req(url, "PUT", b"secure", context=ctx)[0] == 201
    assert _req(url, context=ctx)[2] == b"secure"
    # by name too (the certificate has DNS:localhost)
    assert _req(f"https://localhost:{nginx.tls_port}{nprefix}/t", context=ctx)[2] == b"secure"


def test_nginx_wrong_ca_refused(nginx):
    ctx = ssl.create_default_context(cafile=nginx.wrong_ca_file)
    with pytest.raises(urllib.error.URLError) as ei:
        _req(nginx.tls_url + "/", context=ctx)
    assert isinstance(ei.value.reason, ssl.SSLCertVerificationError)
    ctx = ssl.create_default_context()  # the system's CAs do not know ours either
    with pytest.raises(urllib.error.URLError):
        _req(nginx.tls_url + "/", context=ctx)


def test_nginx_workers_not_root_and_stop(tmp_path):
    srv = NginxServer(tls=False, workers=1).start()
    try:
        assert srv.running()
        master = srv.proc.pid
        assert _req(srv.url + "/x/y", "PUT", b"1")[0] == 201
        if os.geteuid() == 0:
            st = os.stat(os.path.join(srv.root, "x", "y"))
            assert st.st_uid != 0  # written by a worker running as nobody
        prefix = srv.prefix
    finally:
        srv.stop()
    assert not srv.running()
    assert not os.path.exists(prefix)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(srv.url.rsplit(":", 1)[1])), timeout=1)
    with pytest.raises(ProcessLookupError):
        os.kill(master, 0)


def test_nginx_reports_failure_loudly():
    srv = NginxServer(tls=False, extra_http_conf="this_is_not_a_directive on;")
    with pytest.raises(RuntimeError) as ei:
        srv.start()
    assert "this_is_not_a_directive" in str(ei.value)


# ----------------------------------------------------------------------- fault server

@pytest.fixture
def fs(fault_server):
    return fault_server


@pytest.fixture
def fprefix():
    return "/" + uuid.uuid4().hex


def _conn(fs, timeout=10):
    return http.client.HTTPConnection("127.0.0.1", fs.port, timeout=timeout)


def test_fault_server_crud_and_keepalive(fs, fprefix):
    conn = _conn(fs)
    path = fprefix + "/a%20b/c%2Bd"
    conn.request("PUT", path, body=b"hello")
    r = conn.getresponse()
    assert (r.status, r.read()) == (201, b"")
    sock = conn.sock
    conn.request("GET", path)
    r = conn.getresponse()
    assert (r.status, r.read()) == (200, b"hello")
    assert r.getheader("Content-Length") == "5"
    conn.request("HEAD", path)
    r = conn.getresponse()
    assert (r.status, r.getheader("Content-Length"), r.read()) == (200, "5", b"")
    conn.request("PUT", path, body=b"again")
    r = conn.getresponse()
    assert (r.status, r.read()) == (204, b"")
    assert conn.sock is sock
    assert fs.get(fprefix + "/a b/c+d") == b"again"  # stored under the decoded path
    conn.request("DELETE", path)
    r = conn.getresponse()
    assert (r.status, r.read()) == (204, b"")
    conn.request("GET", path)
    r = conn.getresponse()
    r.read()
    assert r.status == 404
    conn.request("DELETE", path)
    r = conn.getresponse()
    r.read()
    assert r.status == 404
    conn.close()
    methods = [x.method for x in fs.requests(fprefix + "/a b/c+d")]
    assert methods == ["PUT", "GET", "HEAD", "PUT", "DELETE", "GET", "DELETE"]
    assert fs.requests(path)[0].raw_path == path


def test_fault_server_chunked_and_expect_continue(fs, fprefix):
    with socket.create_connection(("127.0.0.1", fs.port), timeout=10) as s:
        s.sendall(f"PUT {fprefix}/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 201")
        s.sendall(f"PUT {fprefix}/e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                  "Expect: 100-continue\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 100")
        s.sendall(b"abc")
        assert s.recv(4096).startswith(b"HTTP/1.1 201")
    assert fs.get(fprefix + "/c") == b"hello world"
    assert fs.get(fprefix + "/e") == b"abc"


def test_fault_server_ranges(fs, fprefix):
    data = bytes(range(256)) * 4
    fs.put(fprefix + "/r", data)
    url = fs.url + fprefix + "/r"
    status, hdrs, body = _req(url, headers={"Range": "bytes=10-19"})
    assert (status, body, hdrs["Content-Range"]) == (206, data[10:20], "bytes 10-19/1024")
    assert _req(url, headers={"Range": "bytes=1000-"})[2] == data[1000:]
    assert _req(url, headers={"Range": "bytes=-24"})[2] == data[-24:]
    assert _req(url, headers={"Range": "bytes=1000-5000"})[2] == data[1000:]
    assert _req(url, headers={"Range": "bytes=-5000"})[2] == data
    status, hdrs, _ = _req(url, headers={"Range": "bytes=1024-"})
    assert (status, hdrs["Content-Range"]) == (416, "bytes */1024")
    assert _req(url, headers={"Range": "bytes=0-1,5-6"})[:1] == (200,)


def test_fault_server_listing(fs, fprefix):
    for name in ["a", "b b", "ünï", "sub/x", "sub/y/z", ".hidden"]:
        fs.put(f"{fprefix}/{name}", name.encode())
    status, hdrs, body = _req(fs.url + fprefix + "/")
    assert status == 200 and hdrs["Content-Type"] == "application/json"
    listing = json.loads(body)
    assert {(e["name"], e["type"]) for e in listing} == {
        ("a", "file"), ("b b", "file"), ("ünï", "file"), ("sub", "directory"),
        (".hidden", "file")}
    assert [e.get("size") for e in listing if e["name"] == "b b"] == [3]
    assert all("mtime" in e for e in listing)
    sub = json.loads(_req(fs.url + fprefix + "/sub/")[2])
    assert {(e["name"], e["type"]) for e in sub} == {("x", "file"), ("y", "directory")}
    assert _req(fs.url + fprefix + "/missing/")[0] == 404
    conn = _conn(fs)
    conn.request("GET", fprefix + "/sub")  # a directory without its slash redirects
    r = conn.getresponse()
    r.read()
    assert (r.status, r.getheader("Location")) == (301, fprefix + "/sub/")
    conn.close()


def test_fault_status_and_retry_after(fs, fprefix):
    p = fprefix + "/s"
    fs.put(p, b"data")
    fs.add_faults(p, ["503", "429:2", "500"])
    status, hdrs, body = _req(fs.url + p)
    assert status == 503 and "Retry-After" not in hdrs
    status, hdrs, _ = _req(fs.url + p)
    assert status == 429 and hdrs["Retry-After"] == "2"
    assert _req(fs.url + p)[0] == 500
    assert _req(fs.url + p)[:3:2] == (200, b"data")
    assert [r.fault for r in fs.requests(p)] == ["503", "429:2", "500", None]
    assert fs.pending_faults(p) == []


def test_fault_on_put_does_not_store(fs, fprefix):
    p = fprefix + "/w"
    fs.add_faults(p, ["503"])
    assert _req(fs.url + p, "PUT", b"one")[0] == 503
    assert fs.get(p) is None
    assert _req(fs.url + p, "PUT", b"two")[0] == 201
    assert fs.get(p) == b"two"


def _raw_get(fs, path, timeout=10):
    """Send one GET and return (head, body bytes received until close/reset/timeout, how)."""
    s = socket.create_connection(("127.0.0.1", fs.port), timeout=timeout)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    buf = b""
    how = "eof"
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            head, sep, body = buf.partition(b"\r\n\r\n")
            if sep:
                n = int([ln.split(b":")[1] for ln in head.split(b"\r\n")
                         if ln.lower().startswith(b"content-length")][0])
                if len(body) >= n:
                    how = "complete"
                    break
    except ConnectionResetError:
        how = "reset"
    except socket.timeout:
        how = "timeout"
    finally:
        s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    return head, body, how


def test_fault_reset_short_corrupt(fs, fprefix):
    p = fprefix + "/big"
    data = os.urandom(1 << 20)
    fs.put(p, data)
    fs.add_faults(p, ["reset", "short", "corrupt"])
    head, body, how = _raw_get(fs, p)
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: 1048576" in head
    assert how == "reset" or (how == "eof" and len(body) < len(data))
    assert len(body) <= len(data) // 2 and data.startswith(body)
    head, body, how = _raw_get(fs, p)
    assert how == "eof" and body == data[:len(data) // 2]
    head, body, how = _raw_get(fs, p)
    assert how == "complete" and len(body) == len(data) and body != data
    diff = [i for i in range(len(data)) if body[i] != data[i]]
    assert diff == [len(data) // 2]
    head, body, how = _raw_get(fs, p)
    assert how == "complete" and body == data


def test_fault_stall_and_delay(fs, fprefix):
    p = fprefix + "/st"
    data = b"x" * 1000
    fs.put(p, data)
    fs.add_faults(p, ["stall:1.5", "stall:0.3", "delay:0.3"])
    t0 = time.monotonic()
    head, body, how = _raw_get(fs, p, timeout=0.5)
    assert how == "timeout" and body == data[:500]
    assert time.monotonic() - t0 < 1.4
    t0 = time.monotonic()
    head, body, how = _raw_get(fs, p)  # a short stall, then the rest arrives
    assert how == "complete" and body == data and time.monotonic() - t0 >= 0.25
    t0 = time.monotonic()
    head, body, how = _raw_get(fs, p)
    assert how == "complete" and body == data and time.monotonic() - t0 >= 0.25
    # the stalled connection from the first request did not block anybody
    assert _req(fs.url + p)[2] == data


def test_fault_close_and_head_reset(fs, fprefix):
    p = fprefix + "/c"
    fs.put(p, b"abc")
    fs.add_faults(p, ["close", "reset"])
    conn = _conn(fs)
    conn.request("GET", p)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        conn.getresponse()
    conn.close()
    conn = _conn(fs)
    conn.request("HEAD", p)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        conn.getresponse()
    conn.close()
    assert _req(fs.url + p)[2] == b"abc"


def test_fault_spec_validation(fs):
    with pytest.raises(ValueError):
        fs.add_faults("/x", ["bogus"])
    with pytest.raises(ValueError):
        fs.add_faults("/x", ["stall"])
    with pytest.raises(TypeError):
        fs.add_faults("/x", [503])


def test_fault_server_requests_record_headers_and_time(fs, fprefix):
    p = fprefix + "/h"
    t0 = time.time()
    _req(fs.url + p, "PUT", b"12345", headers={"Authorization": "Bearer tok",
                                                "Content-Type": "application/octet-stream"})
    (r,) = fs.requests(p)
    assert r.method == "PUT" and r.body_size == 5
    assert ("Authorization", "Bearer tok") in r.headers
    assert t0 - 1 <= r.time <= time.time() + 1
    assert fs.requests(p, method="GET") == []


def test_fault_server_start_stop():
    srv = FaultServer().start()
    port = srv.port
    srv.put("/k", b"v")
    assert _req(srv.url + "/k")[2] == b"v"
    srv.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_fault_server_object_headers(fs, fprefix):
    p = fprefix + "/h"
    fs.put(p, b"0123456789", headers=[("X-Goog-Hash", "crc32c=abc"), ("X-Extra", "1")])
    status, hdrs, body = _req(fs.url + p)
    assert (status, body, hdrs["X-Goog-Hash"], hdrs["X-Extra"]) == (200, b"0123456789", "crc32c=abc", "1")
    assert _req(fs.url + p, headers={"Range": "bytes=0-1"})[1]["X-Goog-Hash"] == "crc32c=abc"
    _req(fs.url + p, "PUT", b"new")  # a PUT replaces the object and forgets its headers
    assert "X-Goog-Hash" not in _req(fs.url + p)[1]
