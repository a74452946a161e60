"""Reliability against the project's fault-injecting server (tests/servers/faultserver.py):
CloudFilesStore("http://127.0.0.1:PORT/<unique>", retry_base=0.01, ...) meets 5xx, 429 with
Retry-After, resets mid-body, short bodies and stalls; the tests assert the requests the
server saw and the bytes returned."""
import base64
import os
import subprocess
import sys
import time
import uuid

import pytest

from servers import free_port

try:
    from cloudfiles_store import CloudFilesStore, errors
    _IMPORT_ERROR = None
except ImportError as exc:
    CloudFilesStore = errors = None
    _IMPORT_ERROR = exc


@pytest.fixture(autouse=True)
def _require_store():
    if _IMPORT_ERROR is not None:
        pytest.fail(f"cloudfiles_store cannot be imported: {_IMPORT_ERROR!r}")


def attempts(retries):
    """Requests a server sees for one operation that never succeeds, given `retries`
    (the option counts attempts in all, the first included)."""
    return retries


class Target:
    """A unique prefix on the fault server, and stores rooted there."""

    def __init__(self, server):
        self.server = server
        self.prefix = "/" + uuid.uuid4().hex
        self.url = server.url + self.prefix
        self.stores = []

    def path(self, key):
        return f"{self.prefix}/{key}"

    def put(self, key, data):
        self.server.put(self.path(key), data)

    def get(self, key):
        return self.server.get(self.path(key))

    def faults(self, key, faults):
        self.server.add_faults(self.path(key), faults)

    def requests(self, key, method=None):
        return self.server.requests(self.path(key), method=method)

    def store(self, **options):
        opts = {"retry_base": 0.01, "retry_cap": 0.1, "retries": 4, **options}
        s = CloudFilesStore(self.url, **opts)
        self.stores.append(s)
        return s


@pytest.fixture
def target(fault_server):
    t = Target(fault_server)
    yield t
    for s in t.stores:
        try:
            s.close()
        except Exception:
            pass


# ----------------------------------------------------------------------- GET faults

@pytest.mark.parametrize("fault", ["503", "500", "502", "504", "408", "429"])
def test_transient_status_then_success(target, fault):
    data = os.urandom(10000)
    target.put("k", data)
    target.faults("k", [fault])
    s = target.store()
    assert s["k"] == data
    reqs = target.requests("k")
    assert [r.fault for r in reqs] == [fault, None]
    assert all(r.method == "GET" for r in reqs)


def test_several_503_then_success(target):
    target.put("k", b"eventually")
    target.faults("k", ["503", "503", "503"])
    assert target.store(retries=4)["k"] == b"eventually"
    assert len(target.requests("k")) == 4


def test_429_retry_after_is_honoured(target):
    target.put("k", b"slow down")
    target.faults("k", ["429:1"])
    s = target.store(retry_base=0.01, retry_cap=5.0)
    t0 = time.monotonic()
    assert s["k"] == b"slow down"
    elapsed = time.monotonic() - t0
    reqs = target.requests("k")
    assert len(reqs) == 2
    gap = reqs[1].time - reqs[0].time
    assert gap >= 0.9, f"retried {gap:.3f}s after a Retry-After: 1"
    assert elapsed >= 0.9
    assert elapsed < 4.0


def test_503_retry_after_is_honoured(target):
    target.put("k", b"v")
    target.faults("k", ["503:1"])
    s = target.store(retry_base=0.01, retry_cap=5.0)
    assert s["k"] == b"v"
    reqs = target.requests("k")
    assert len(reqs) == 2 and reqs[1].time - reqs[0].time >= 0.9


def test_reset_mid_body(target):
    data = os.urandom(2 << 20)
    target.put("k", data)
    target.faults("k", ["reset"])
    got = target.store()["k"]
    assert len(got) == len(data) and got == data
    assert [r.fault for r in target.requests("k")] == ["reset", None]


def test_short_body(target):
    data = os.urandom(300000)
    target.put("k", data)
    target.faults("k", ["short"])
    got = target.store()["k"]
    assert len(got) == len(data) and got == data
    assert [r.fault for r in target.requests("k")] == ["short", None]


def test_connection_closed_without_answer(target):
    target.put("k", b"v")
    target.faults("k", ["close"])
    assert target.store()["k"] == b"v"
    assert len(target.requests("k")) == 2


def test_stall_detected(target):
    data = os.urandom(100000)
    target.put("k", data)
    target.faults("k", ["stall:5"])
    s = target.store(stall_timeout=1)
    t0 = time.monotonic()
    got = s["k"]
    elapsed = time.monotonic() - t0
    assert got == data
    assert [r.fault for r in target.requests("k")] == ["stall:5", None]
    assert elapsed < 2.2, f"took {elapsed:.2f}s: the stall was not detected after ~1s"


CLAIMED_LENGTH_CHILD = """
import sys
from cloudfiles_store import CloudFilesStore, errors
s = CloudFilesStore(sys.argv[1], stall_timeout=1, retries=1, concurrency=4)
try:
    s.getitems(["k0", "k1", "k2", "k3"])
except errors.BatchError as e:
    assert len(e.errors) == 4, e.errors
else:
    raise AssertionError("four stalled bodies were answered")
# VmHWM: this process's peak (ru_maxrss would count the parent's RSS at fork)
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) // 1024)
"""


def test_claimed_length_costs_memory_only_as_bytes_arrive(target):
    """A server announcing Content-Length: 1 GiB, then sending 10 bytes and nothing more,
    for 4 keys at once: the client reserved (and faulted in) the 4 GiB claimed."""
    for i in range(4):
        target.put(f"k{i}", b"0123456789")
        target.faults(f"k{i}", ["claim:1073741824"])
    run = subprocess.run([sys.executable, "-c", CLAIMED_LENGTH_CHILD, target.url], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    peak_mib = int(run.stdout.split()[-1])
    assert peak_mib < 200, f"peak RSS {peak_mib} MiB for 40 bytes received"


def test_slow_but_moving_response_is_not_a_stall(target):
    target.put("k", b"x" * 1000)
    target.faults("k", ["delay:0.3"])
    s = target.store(stall_timeout=2)
    assert s["k"] == b"x" * 1000
    assert len(target.requests("k")) == 1


@pytest.mark.skip(reason="plain http carries no checksum: a flipped byte cannot be detected "
                         "(checksums are tested on s3/gcs)")
def test_corrupt_body_detected(target):
    target.put("k", b"0123456789")
    target.faults("k", ["corrupt"])
    assert target.store()["k"] == b"0123456789"


def test_retries_exhausted(target):
    target.put("k", b"never")
    target.faults("k", ["503"] * 20)
    s = target.store(retries=3)
    with pytest.raises(errors.TransientError) as ei:
        s["k"]
    e = ei.value
    assert not isinstance(e, KeyError)
    assert e.key == "k"
    assert target.url in (e.url or "") and (e.url or "").endswith("/k")
    assert e.status == 503
    text = str(e)
    assert "k" in text and f"127.0.0.1:{target.server.port}" in text and "503" in text
    assert len(target.requests("k")) == attempts(3)


def test_no_retries(target):
    target.put("k", b"v")
    target.faults("k", ["500"])
    with pytest.raises(errors.TransientError):
        target.store(retries=1)["k"]
    assert len(target.requests("k")) == attempts(1) == 1


def test_missing_is_not_retried(target):
    s = target.store()
    with pytest.raises(KeyError):
        s["missing"]
    assert len(target.requests("missing")) == 1
    target.faults("missing2", ["503"])
    with pytest.raises(KeyError):
        s["missing2"]
    assert len(target.requests("missing2")) == 2


def test_client_error_not_retried(target):
    target.put("k", b"v")
    target.faults("k", ["403", "403", "403"])
    with pytest.raises(errors.CloudFilesError) as ei:
        target.store()["k"]
    assert not isinstance(ei.value, (KeyError, errors.TransientError))
    assert ei.value.status == 403
    assert len(target.requests("k")) == 1


def test_connection_refused(fault_server):
    port = free_port()
    s = CloudFilesStore(f"http://127.0.0.1:{port}/x", retries=2, retry_base=0.01, retry_cap=0.05)
    t0 = time.monotonic()
    with pytest.raises(errors.TransientError) as ei:
        s["k"]
    assert time.monotonic() - t0 < 5
    assert ei.value.key == "k" and str(port) in (ei.value.url or "")
    s.close()


# ------------------------------------------------------------- other methods, ranges

def test_put_retried(target):
    data = os.urandom(50000)
    target.faults("k", ["503", "reset"])
    s = target.store()
    s["k"] = data
    assert target.get("k") == data
    reqs = target.requests("k", method="PUT")
    assert [r.fault for r in reqs] == ["503", "reset", None]
    assert all(r.body_size == len(data) for r in reqs)
    ctype = target.server.header(reqs[-1], "Content-Type")
    assert ctype and "x-www-form-urlencoded" not in ctype


def test_delete_retried(target):
    target.put("k", b"v")
    target.faults("k", ["503"])
    s = target.store()
    del s["k"]
    assert target.get("k") is None
    assert [r.method for r in target.requests("k")] == ["DELETE", "DELETE"]


def test_contains_retried(target):
    target.put("k", b"v")
    target.faults("k", ["503"])
    assert "k" in target.store()
    assert len(target.requests("k")) == 2


def test_range_retried(target):
    data = bytes(range(256)) * 40
    target.put("k", data)
    target.faults("k", ["503", "short"])
    s = target.store()
    assert s.get_range("k", 100, 5000) == data[100:5000]
    reqs = target.requests("k")
    assert len(reqs) == 3
    assert all(target.server.header(r, "Range") == "bytes=100-4999" for r in reqs)


def test_listing_from_fault_server(target):
    for k in ["a", "b c", "d/e", "d/f/g"]:
        target.put(k, k.encode())
    target.faults("", ["503"])  # the listing of the root, GET <prefix>/
    s = target.store()
    assert sorted(s) == ["a", "b c", "d/e", "d/f/g"]
    assert sorted(s.listdir()) == ["a", "b c", "d"]
    assert sorted(s.listdir("d")) == ["e", "f"]


_FILE = '{"name": "%s", "type": "file", "mtime": "Wed, 25 Nov 2026 10:00:00 GMT", "size": %d}'


@pytest.mark.parametrize("body, names", [
    (b"[]", []),
    (b" \n[ \r\n\t]\n", []),
    (("[\n" + ",\n".join(_FILE % (f"k{i}", i) for i in range(3)) + "\n]\n").encode(),
     ["k0", "k1", "k2"]),
    (("[" + ",".join(_FILE % (f"k{i}", i) for i in range(3)) + "]").encode(), ["k0", "k1", "k2"]),
    # names with the array's own punctuation, entries with nested values of their own
    (b'[{"name": "a],[b", "type": "file", "size": 1, "extra": [1, {"x": "]"}]},'
     b'{"name": "c\\"d", "type": "file", "size": 2}, {"type": "directory", "name": "sub"}]',
     ["a],[b", 'c"d', "sub"]),
    # a type neither file nor directory (a symlink, say) is left out
    (b'[{"name": "l", "type": "other"}, {"name": "f", "type": "file", "size": 0}]', ["f"]),
])
def test_directory_index_read(target, body, names):
    target.server.set_listing(target.prefix + "/", body)
    assert sorted(target.store().listdir()) == sorted(names)


@pytest.mark.parametrize("body", [
    b"", b"{}", b"null", b"[", b"[,]", b"[1,]", b"]",
    b'[{"name": "a", "type": "file"},]',
    b'[{"name": "a", "type": "file"} {"name": "b", "type": "file"}]',
    b'[{"name": "a", "type": "file"}] x',
    b'[{"name": "a", "type": "file"}, {"name": "b"',
    b'[{"name": "a", "type": "file"}, 7]',
    b'[{"name": 1, "type": "file"}]',
])
def test_malformed_directory_index(target, body):
    from cloudfiles_store import errors

    target.server.set_listing(target.prefix + "/", body)
    with pytest.raises(errors.ProtocolError) as e:
        target.store().listdir()
    assert target.url in str(e.value)


def test_large_directory_index(target):
    n = 20000
    target.server.set_listing(target.prefix + "/", ("[" + ",\n".join(
        _FILE % (f"key-{i:06d}", i) for i in range(n)) + "]").encode())
    s = target.store()
    assert s.listdir() == [f"key-{i:06d}" for i in range(n)]
    assert s.getsize() == n * (n - 1) // 2


# ------------------------------------------------------------------------- batches

def test_getitems_each_key_faulted_once(target):
    kinds = ["503", "500", "429", "reset", "short", "close", "502", "408"]
    values = {f"b/{i}": os.urandom(20000 + i) for i in range(40)}
    for i, (k, v) in enumerate(values.items()):
        target.put(k, v)
        target.faults(k, [kinds[i % len(kinds)]])
    s = target.store(concurrency=8)
    got = s.getitems(list(values) + ["b/missing"])
    assert got == values
    for k in values:
        assert len(target.requests(k)) == 2, k


def test_setitems_each_key_faulted_once(target):
    values = {f"p/{i}": os.urandom(5000) for i in range(30)}
    for k in values:
        target.faults(k, ["503"])
    target.store().setitems(values)
    for k, v in values.items():
        assert target.get(k) == v
        assert len(target.requests(k, method="PUT")) == 2


def test_batch_error_lists_failed_key_and_keeps_others(target):
    values = {f"w/{i}": b"%d" % i for i in range(6)}
    target.faults("w/3", ["500"] * 20)
    s = target.store(retries=2)
    with pytest.raises(errors.BatchError) as ei:
        s.setitems(values)
    failed = ei.value.errors
    assert [e.key for e in failed] == ["w/3"]
    assert isinstance(failed[0], errors.TransientError) and failed[0].status == 500
    assert "w/3" in str(ei.value)
    for k, v in values.items():
        assert target.get(k) == (None if k == "w/3" else v)
    assert len(target.requests("w/3")) == attempts(2)


def test_getitems_failure_is_a_batch_error_not_a_missing_key(target):
    for i in range(5):
        target.put(f"r/{i}", b"%d" % i)
    target.faults("r/2", ["503"] * 20)
    target.faults("r/4", ["503"] * 20)
    s = target.store(retries=2)
    with pytest.raises(errors.BatchError) as ei:
        s.getitems([f"r/{i}" for i in range(5)])
    assert sorted(e.key for e in ei.value.errors) == ["r/2", "r/4"]
    # every transfer finished before the error: the others were all fetched
    for i in (0, 1, 3):
        assert len(target.requests(f"r/{i}")) == 1


def test_iter_get_with_faults(target):
    values = {f"i/{i}": os.urandom(1000) for i in range(20)}
    for k, v in values.items():
        target.put(k, v)
    target.faults("i/5", ["503"])
    target.faults("i/7", ["reset"])
    got = dict(target.store().iter_get(list(values)))
    assert got == values


def test_concurrency_is_bounded(target):
    values = {f"c/{i}": b"v" for i in range(16)}
    for k, v in values.items():
        target.put(k, v)
        target.faults(k, ["delay:0.2"])
    s = target.store(concurrency=4)
    t0 = time.monotonic()
    assert s.getitems(list(values)) == values
    elapsed = time.monotonic() - t0
    peak = target.server.max_concurrency(target.prefix + "/")
    assert 2 <= peak <= 4
    assert elapsed >= 0.75  # 16 requests of 0.2 s, 4 at a time
    assert elapsed < 5.0    # ... but in parallel


def test_connections_reused_across_batches(target):
    values = {f"ka/{i}": b"v" for i in range(50)}
    for k, v in values.items():
        target.put(k, v)
    s = target.store(concurrency=4)
    s.getitems(list(values))
    first = {r.conn for k in values for r in target.requests(k)}
    s.getitems(list(values))
    both = {r.conn for k in values for r in target.requests(k)}
    assert len(first) <= 4
    assert len(both) <= 4 + 1, "the second batch should reuse the first batch's connections"


# ------------------------------------------------------------------ auth and secrets

SECRET = "s3cr3t"


def test_bearer_token_sent_and_kept_out_of_errors(target):
    target.put("k", b"v")
    s = target.store(bearer_token=SECRET, retries=2)
    assert s["k"] == b"v"
    (r,) = target.requests("k")
    assert target.server.header(r, "Authorization") == f"Bearer {SECRET}"
    assert SECRET not in repr(s)
    target.faults("k", ["503"] * 5)
    with pytest.raises(errors.TransientError) as ei:
        s["k"]
    assert SECRET not in str(ei.value) and SECRET not in repr(ei.value)
    assert SECRET not in str(ei.value.url)


def test_basic_auth_sent(target):
    target.put("k", b"v")
    s = target.store(username="user", password=SECRET)
    assert s["k"] == b"v"
    (r,) = target.requests("k")
    expected = "Basic " + base64.b64encode(f"user:{SECRET}".encode()).decode()
    assert target.server.header(r, "Authorization") == expected
    assert SECRET not in repr(s)


def test_retry_after_a_broken_connection_takes_a_fresh_one(target):
    """After a connection broke mid-response, the retry opens a new connection rather than
    trying another kept-alive one the server may also have closed. (A close before any
    answer libcurl retries by itself.)"""
    values = {f"f/{i}": b"v" * 100_000 for i in range(8)}
    for k, v in values.items():
        target.put(k, v)
    s = target.store(concurrency=4)
    assert s.getitems(list(values)) == values  # four connections kept alive
    opened = {r.conn for k in values for r in target.requests(k)}
    target.faults("f/0", ["reset"])
    assert s["f/0"] == b"v" * 100_000
    first, retry = target.requests("f/0")[-2:]
    assert first.fault == "reset" and retry.fault is None
    assert first.conn in opened, "the first try reused a kept-alive connection"
    assert retry.conn not in opened | {first.conn}, "the retry took a fresh connection"


@pytest.mark.parametrize("option", ["bearer_token", "password", "username", "ca_bundle"])
@pytest.mark.parametrize("bad", ["T\r\nX-Injected: yes", "T\nX-Injected: yes", "T\rX", "T\x00X"])
def test_option_values_cannot_inject_headers(target, option, bad):
    target.put("k", b"v")
    with pytest.raises(errors.OptionError, match=f"option {option}: a value may not hold CR, LF or NUL") as ei:
        target.store(**{option: bad})
    assert "Injected" not in str(ei.value)
    assert target.requests("k") == []


SLOWDOWN_CHILD = """
import sys
from cloudfiles_store import CloudFilesStore, engine_stats
url, n = sys.argv[1], int(sys.argv[2])
s = CloudFilesStore(url, concurrency=32, retries=100, retry_base=0.005, retry_cap=0.1)
assert len(s.getitems(f"k{i}" for i in range(n))) == n
print(engine_stats()["window_decreases"], flush=True)
sys.stdin.readline()  # the server now takes everything
assert len(s.getitems(f"k{i % n}" for i in range(3 * n))) == n
print("done", flush=True)
"""


def test_slowdown_shrinks_in_flight_and_success_grows_it_back(target):
    """A server that takes 8 requests at a time and answers the rest 503 (S3's SlowDown),
    a store at concurrency 32: the host's window halves on push-back (AIMD), so in-flight
    falls toward what the server takes and the share of rejected requests falls; once the
    server takes everything, successes widen the window back to the store's 32. In a
    process of its own: the window is per host, shared by the whole process."""
    server, n = target.server, 400
    for i in range(n):
        target.put(f"k{i}", b"x")
    server.set_capacity(8, service_time=0.05)
    child = subprocess.Popen([sys.executable, "-c", SLOWDOWN_CHILD, target.url, str(n)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        start = time.monotonic()
        line = child.stdout.readline()
        assert line, f"the child failed: {child.stderr.read()[-3000:]}"
        halvings = int(line)
        elapsed = time.monotonic() - start
        mine = [r for r in server.requests() if r.path.startswith(target.prefix + "/")]
        rejected = [r.fault == "capacity" for r in sorted(mine, key=lambda r: r.time)]
        late_peak = server.max_concurrency(target.prefix, since=start + elapsed / 2)

        server.set_capacity(None, service_time=0.05)
        since = time.monotonic()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "done", child.stderr.read()[-3000:]
        recovered = server.max_concurrency(target.prefix, since=since)
    finally:
        server.set_capacity(None)
        child.kill()
        child.wait()
    quarter = len(rejected) // 4
    early, late = sum(rejected[:quarter]) / quarter, sum(rejected[-quarter:]) / quarter
    print(f"AIMD: rejected {early:.0%} -> {late:.0%}; in flight {late_peak} late under push-back, "
          f"{recovered} after; {halvings} halvings")
    assert halvings > 0
    assert late < early / 2, f"rejected {early:.0%} of the first requests, {late:.0%} of the last"
    assert late_peak <= 16, f"{late_peak} in flight in the second half, the server takes 8"
    assert recovered >= 24, f"in flight grew back to {recovered} of 32 only"
