"""A write's value may be a binary file on disk: its bytes from the file's position to its
end are read as they are hashed and sent, never held whole (S3 parts and GCS resumable
chunks are read from the file one by one; file:// copies it in the kernel). Every backend,
through its multi-request paths too, and a bounded peak RSS for a large upload."""
import io
import json
import os
import subprocess
import sys
import threading
import time

import conftest
import pytest

from cloudfiles_store import CloudFilesStore, StorageIOError

MiB = 1 << 20

# the smallest parts and chunks each service takes: several requests for a few MiB
_MANY_REQUESTS = {
    "s3": {"multipart_threshold": 5 * MiB, "multipart_chunksize": 5 * MiB},
    "s3-seaweedfs": {"multipart_threshold": 5 * MiB, "multipart_chunksize": 5 * MiB},
    "gs": {"resumable_chunksize": 256 << 10},
}


# the backends that store a Content-Encoding with the bytes (nginx keeps only the bytes)
KEEPING = [b for b in ("mem", "file", "s3", "gs") if b in conftest._selected_backends()]


@pytest.fixture(params=KEEPING)
def keeping(request):
    return conftest.BACKENDS[request.param](request, conftest._unique())


def _keys_read_whole(monkeypatch):
    """The list the keys a transfer reads whole into memory (_transfer._read_raw) go into."""
    from cloudfiles_store import _transfer
    read = []
    real_read_raw = _transfer._read_raw

    def spying_read_raw(src, keys, decode=False):
        read.extend(keys)
        return real_read_raw(src, keys, decode)

    monkeypatch.setattr(_transfer, "_read_raw", spying_read_raw)
    return read


def _file(tmp_path, data, name="value.bin"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("size", [0, 1, 4096, 3 * MiB + 7])
def test_a_file_value_round_trips(store, tmp_path, size):
    data = os.urandom(size)
    with open(_file(tmp_path, data), "rb") as f:
        store["k"] = f
    assert store["k"] == data


def test_a_file_goes_up_in_parts_read_from_it(backend, make_store, tmp_path):
    """11 MiB + 3: three S3 parts (the last short), 45 GCS chunks, one PUT elsewhere; the
    parts are hashed from the file (Content-MD5, CRC32C), which the services check."""
    store = make_store(**_MANY_REQUESTS.get(backend.name, {}))
    data = os.urandom(11 * MiB + 3)
    path = _file(tmp_path, data)
    with open(path, "rb") as f:
        store.setitems({"a": f, "b": data})
    assert store["a"] == data and store["b"] == data
    assert store.head("a").size == len(data)


def test_a_file_value_is_sent_from_its_position(store, tmp_path):
    data = os.urandom(100_000)
    with open(_file(tmp_path, data), "rb") as f:
        f.read(10)  # a buffered reader has read ahead: tell() says where the caller is
        store["k"] = f
        assert f.tell() == 10  # the caller's file is left as it was
    assert store["k"] == data[10:]


def test_a_file_value_with_compression(keeping, tmp_path):
    store = keeping.store(compress="gzip")  # encoded as a stream into a temporary file
    data = b"compressible " * 100_000
    with open(_file(tmp_path, data), "rb") as f:
        store["k"] = f
    assert store["k"] == data
    value, encoding = store.get_ranges([("k", 0, None)], raw=True)[0]
    assert encoding == "gzip" and len(value) < len(data) // 10


def test_a_raw_file_value_keeps_its_encoding(keeping, tmp_path):
    import gzip
    store = keeping.store()
    data = b"abc" * 100_000
    with open(_file(tmp_path, gzip.compress(data)), "rb") as f:
        store.setitems({"k": (f, "gzip")}, raw=True)
    assert store["k"] == data


@pytest.mark.parametrize("make_value, says", [
    (lambda path: open(path, "r"), "text file"),
    (lambda path: io.BytesIO(b"x"), "without a descriptor"),
    (lambda path: os.fdopen(os.pipe()[0], "rb"), "not a regular one"),
])
def test_a_file_that_cannot_be_read_at_offsets_is_refused(store, tmp_path, make_value, says):
    value = make_value(_file(tmp_path, b"data"))
    try:
        with pytest.raises(TypeError, match=says):
            store["k"] = value
        with pytest.raises(TypeError, match=says):
            store.setitems({"j": b"stored", "k": value})
    finally:
        value.close()
    assert "k" not in store


def test_a_file_that_shrinks_fails_and_stores_nothing(moto_server, tmp_path):
    """The file is cut after it was given and before its parts are read (the proxy holds
    CreateMultipartUpload meanwhile): the parts find it shorter than it was, the upload is
    aborted, the write fails with StorageIOError naming the key, and nothing is stored."""
    from servers.faultproxy import FaultProxy
    proxy = FaultProxy(moto_server.endpoint, rate=0.0, delay_seconds=2.0).start()
    try:
        store = CloudFilesStore(moto_server.url(f"shrink-{os.getpid()}"),
                                **moto_server.store_options(endpoint_url=proxy.url),
                                multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
        path = _file(tmp_path, os.urandom(12 * MiB))
        proxy.script("delay", "POST", "uploads")
        failure = []

        def put():
            with open(path, "rb") as f:
                try:
                    store["k"] = f
                except BaseException as e:  # noqa: BLE001 - checked below
                    failure.append(e)

        writer = threading.Thread(target=put)
        writer.start()
        deadline = time.monotonic() + 30
        while not proxy.counts().get("delay") and time.monotonic() < deadline:
            time.sleep(0.001)
        os.truncate(path, 6 * MiB)  # the second part is gone, the first is short
        writer.join(60)
        assert len(failure) == 1 and isinstance(failure[0], StorageIOError), failure
        assert "'k'" in str(failure[0]) and "shorter" in str(failure[0])
        assert "k" not in store
    finally:
        proxy.stop()


@pytest.mark.parametrize("compress", [None, "zstd", "gzip"])
def test_a_large_upload_holds_no_copy_of_the_file(moto_server, tmp_path, compress):
    """256 MiB from a file to S3 in 8 MiB parts, 4 at a time: peak RSS of the process grows
    by far less than the file (about the parts' hashing buffers and curl's). Compressed, the
    file is encoded as a stream into a temporary file, which is then sent the same way."""
    path = _file(tmp_path, b"")
    text = b"a line of text that compresses well\n" * (MiB // 72)
    with open(path, "wb") as f:
        for _ in range(256):  # half random, half text: about 2:1
            f.write(os.urandom(MiB - len(text)) + text)
    url = moto_server.url(f"rss-{os.getpid()}-{compress}")
    script = f"""
import json, resource, sys
from cloudfiles_store import CloudFilesStore
s = CloudFilesStore({url!r}, **{moto_server.store_options()!r}, multipart_threshold=8 << 20,
                    multipart_chunksize=8 << 20, multipart_concurrency=4)
s["warm"] = b"x"  # the engine, curl and TLS set up before the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open({str(path)!r}, "rb") as f:
    s.put("big", f, compress={compress!r})
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
info = s.head("big")
print(json.dumps({{"grew_kib": after - before, "size": info.size,
                   "encoding": info.content_encoding}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, check=True)
    got = json.loads(out.stdout)
    print(got)
    assert got["encoding"] == compress
    if compress:
        assert 100 * MiB < got["size"] < 200 * MiB, got
    else:
        assert got["size"] == 256 * MiB
    assert got["grew_kib"] < 64 * 1024, got  # a copy would be 262,144 KiB
    if compress:  # what was stored decodes to the file
        store = CloudFilesStore(url, **moto_server.store_options())
        with open(path, "rb") as f:
            assert store.get_range("big", 200 * MiB, 200 * MiB + 4096) == (
                f.seek(200 * MiB) and f.read(4096))


def test_a_transfer_sends_large_objects_from_their_files(keeping, tmp_path, monkeypatch):
    """transfer_to from a file:// store: objects of LARGE_OBJECT bytes or more go from
    their files (never read into memory: _read_raw never sees them), as stored (a .gz file
    arrives gzip-encoded), small ones in groups as before."""
    import gzip

    from cloudfiles_store import _transfer
    monkeypatch.setattr(_transfer, "LARGE_OBJECT", MiB)
    root = tmp_path / "src"
    (root / "d").mkdir(parents=True)
    big, text = os.urandom(6 * MiB + 5), b"line\n" * 400_000
    (root / "d" / "big").write_bytes(big)
    (root / "d" / "text.gz").write_bytes(gzip.compress(text))  # 2 MiB decoded, ~9 KiB stored
    (root / "d" / "small").write_bytes(b"small")
    (root / "d" / "large.gz").write_bytes(gzip.compress(big, compresslevel=1))
    read = _keys_read_whole(monkeypatch)
    src = CloudFilesStore(f"file://{root}")
    dest = keeping.store()
    summary = src.transfer_to(dest, prefix="d/")
    assert summary["objects"] == 4
    assert sorted(read) == ["d/small", "d/text"]  # text.gz is small as stored
    assert dest["d/big"] == big and dest["d/small"] == b"small" and dest["d/text"] == text
    assert dest["d/large"] == big
    assert dest.get_ranges([("d/large", 0, None)], raw=True)[0][1] == "gzip"


def test_a_transfer_of_a_large_file_that_vanished_names_it(moto_server, tmp_path, monkeypatch):
    from cloudfiles_store import BatchError, _transfer
    monkeypatch.setattr(_transfer, "LARGE_OBJECT", MiB)
    root = tmp_path / "src"
    root.mkdir()
    (root / "big").write_bytes(os.urandom(2 * MiB))
    (root / "small").write_bytes(b"s")
    src = CloudFilesStore(f"file://{root}")
    dest = CloudFilesStore(moto_server.url(f"gone-{os.getpid()}"), **moto_server.store_options())
    real_open = src._open_stored

    class Vanishing:  # the file is removed between the listing and its copy
        def __getattr__(self, name):
            return getattr(src, name)

        def _open_stored(self, key):
            os.remove(root / key)
            return real_open(key)

    with pytest.raises(BatchError) as e:
        _transfer.transfer(Vanishing(), dest)
    assert e.value.failed == ["big"] and e.value.summary["objects"] == 1
    assert dest["small"] == b"s" and "big" not in dest


def test_a_large_object_between_remote_stores_goes_through_a_temporary_file(
        moto_server, gcs_server, monkeypatch):
    """S3 to GCS, neither file://: a large object is read as ranges into an unnamed
    temporary file and sent from it (never held), as stored (gzip stays gzip) and with its
    attributes; small ones in groups as before."""
    from cloudfiles_store import _transfer
    monkeypatch.setattr(_transfer, "LARGE_OBJECT", 256 << 10)
    monkeypatch.setattr(_transfer, "RANGE_PART", 256 << 10)
    read, spooled = _keys_read_whole(monkeypatch), []
    real_spool = _transfer._spool_and_send

    def spying_spool(src, dest, key, *args):
        spooled.append(key)
        return real_spool(src, dest, key, *args)

    monkeypatch.setattr(_transfer, "_spool_and_send", spying_spool)
    src = CloudFilesStore(moto_server.url(conftest._unique()), **moto_server.store_options())
    big = os.urandom(3 * MiB + 11)
    text = b"".join(b"row %08d, compressible\n" % i for i in range(300_000))
    src.put("big", big, content_type="application/x-big", metadata={"owner": "alice"})
    src.put("text", text, compress="gzip", level=1)
    assert src.head("text").size > 2 * (256 << 10)  # as stored: several ranges
    src["small"] = b"small"
    dest = CloudFilesStore(f"gs://{conftest.GCS_BUCKET}/{conftest._unique()}",
                           endpoint_url=gcs_server.url, resumable_chunksize=256 << 10)
    summary = src.transfer_to(dest)
    assert summary["objects"] == 3 and sorted(spooled) == ["big", "text"] and read == ["small"]
    assert dest["big"] == big and dest["text"] == text and dest["small"] == b"small"
    info = dest.head("big")
    assert info.content_type == "application/x-big" and info.metadata == {"owner": "alice"}
    assert dest.head("text").content_encoding == "gzip"


@pytest.mark.parametrize("source, destination", [("s3", "gs"), ("file", "gs"), ("s3", "file")])
def test_a_large_object_reencoded_is_never_held(source, destination, moto_server, gcs_server,
                                                 tmp_path, monkeypatch):
    """reencode= on a large object: its stored (gzip) bytes go into a temporary file (its
    ranges), or its file is the value, and the engine transcodes it to zstd as a stream
    while writing it (_read_raw never sees it); small ones are decoded and encoded in their
    group as before."""
    import gzip

    from cloudfiles_store import _transfer
    monkeypatch.setattr(_transfer, "LARGE_OBJECT", 256 << 10)
    monkeypatch.setattr(_transfer, "RANGE_PART", 256 << 10)
    read = _keys_read_whole(monkeypatch)
    text = b"".join(b"row %08d, compressible\n" % i for i in range(300_000))
    if source == "s3":
        src = CloudFilesStore(moto_server.url(conftest._unique()), **moto_server.store_options())
        src.put("text", text, compress="gzip", level=1)
        src["small"] = b"small"
    else:
        (tmp_path / "src").mkdir()
        (tmp_path / "src" / "text.gz").write_bytes(gzip.compress(text, compresslevel=1))
        (tmp_path / "src" / "small").write_bytes(b"small")
        src = CloudFilesStore(f"file://{tmp_path / 'src'}")
    assert src.head("text").size > 2 * (256 << 10)  # large as stored
    if destination == "gs":
        dest = CloudFilesStore(f"gs://{conftest.GCS_BUCKET}/{conftest._unique()}",
                               endpoint_url=gcs_server.url, resumable_chunksize=256 << 10)
    else:
        dest = CloudFilesStore(f"file://{tmp_path / 'dest'}")
    summary = src.transfer_to(dest, reencode="zstd")
    assert summary["objects"] == 2 and read == ["small"]
    assert dest.get_ranges([("text", 0, None)], raw=True)[0][1] == "zstd"
    assert dest["text"] == text and dest["small"] == b"small"
    src.transfer_to(dest, keys=[("text", "plain")], reencode=False)
    assert dest.get_ranges([("plain", 0, None)], raw=True)[0] == (text, None)


def _http_to_s3(fault_server, moto_server, monkeypatch):
    """(source store on the fault server holding 'big' (3 MiB: large, read as 1 MiB
    ranges) and 'small', its path there, big's bytes, an empty S3 destination)."""
    from cloudfiles_store import _transfer
    monkeypatch.setattr(_transfer, "LARGE_OBJECT", MiB)
    monkeypatch.setattr(_transfer, "RANGE_PART", MiB)
    base = f"/{conftest._unique()}"
    big = os.urandom(3 * MiB + 17)
    fault_server.put(f"{base}/big", big)
    fault_server.put(f"{base}/small", b"tiny")
    src = CloudFilesStore(fault_server.url + base)
    dest = CloudFilesStore(moto_server.url(conftest._unique()), **moto_server.store_options())
    return src, base, big, dest


def test_a_spooled_object_that_changed_or_cannot_be_spooled_fails_alone(
        fault_server, moto_server, monkeypatch, tmp_path):
    from cloudfiles_store import BatchError
    src, base, big, dest = _http_to_s3(fault_server, moto_server, monkeypatch)
    # listed at a size it no longer has: that key fails, nothing of it stored
    with pytest.raises(BatchError) as e:
        src.transfer_to(dest, keys=[("big", "big", len(big) + 5), ("small", "small", 4)])
    assert e.value.failed == ["big"] and dest["small"] == b"tiny" and "big" not in dest
    gets = [r for r in fault_server.requests(f"{base}/big") if r.method == "GET"]
    assert gets and all(fault_server.header(r, "range") for r in gets)
    # no room for the temporary copy: StorageIOError naming the key and the directory
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "missing"))
    with pytest.raises(BatchError) as e:
        src.transfer_to(dest, keys=[("big", "big", len(big)), ("small", "small2", 4)])
    assert e.value.failed == ["big"] and dest["small2"] == b"tiny" and "big" not in dest
    assert isinstance(e.value.errors[0], StorageIOError)
    assert "'big'" in str(e.value.errors[0]) and "missing" in str(e.value.errors[0])


@pytest.mark.parametrize("attributes", [True, False])
def test_keys_given_without_sizes_are_sized_by_one_head_each(
        fault_server, moto_server, monkeypatch, attributes):
    """transfer_to(keys=[...]) without sizes: one HEAD a key tells which are large (those
    are read as ranges, never whole), and is the only HEAD even when attributes are copied;
    a missing key fails alone."""
    from cloudfiles_store import BatchError
    src, base, big, dest = _http_to_s3(fault_server, moto_server, monkeypatch)
    with pytest.raises(BatchError) as e:
        src.transfer_to(dest, keys=["big", "small", "gone"], attributes=attributes)
    assert e.value.failed == ["gone"] and e.value.summary["objects"] == 2
    assert dest["big"] == big and dest["small"] == b"tiny" and "gone" not in dest
    for key in ("big", "small"):
        heads = [r for r in fault_server.requests(f"{base}/{key}") if r.method == "HEAD"]
        assert len(heads) == 1, (key, heads)
    gets = [r for r in fault_server.requests(f"{base}/big") if r.method == "GET"]
    assert len(gets) == 4 and all(fault_server.header(r, "range") for r in gets)
    small_gets = [r for r in fault_server.requests(f"{base}/small") if r.method == "GET"]
    assert len(small_gets) == 1 and not fault_server.header(small_gets[0], "range")


def test_a_large_copy_between_remote_stores_holds_no_copy(nginx, moto_server, tmp_path):
    """256 MiB from nginx to S3 (8 MiB parts): peak RSS of the process grows by about the
    ranges in flight, not by the object."""
    name = conftest._unique()
    os.makedirs(os.path.join(nginx.root, name))
    with open(os.path.join(nginx.root, name, "big"), "wb") as f:
        for _ in range(256):
            f.write(os.urandom(MiB))
    script = f"""
import json, resource
from cloudfiles_store import CloudFilesStore
src = CloudFilesStore({nginx.url + "/" + name!r})
dest = CloudFilesStore({moto_server.url(name)!r}, **{moto_server.store_options()!r},
                       multipart_threshold=8 << 20, multipart_chunksize=8 << 20)
dest["warm"] = b"x"
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
summary = src.transfer_to(dest)  # listed: its size known
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"grew_kib": after - before, "objects": summary["objects"],
                   "size": dest.head("big").size}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, check=True)
    got = json.loads(out.stdout)
    print(got)
    assert got["objects"] == 1 and got["size"] == 256 * MiB
    assert got["grew_kib"] < 160 * 1024, got  # 2 x 4 ranges of 16 MiB at most; a copy: 262,144
