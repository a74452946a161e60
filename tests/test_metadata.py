"""Object metadata: what writes store besides the bytes (content_type, cache_control,
content_disposition, storage_class, metadata), head/heads/exists, and listing details, on
every backend, cross-read with boto3 (moto) and the GCS JSON API (fake-gcs-server)."""

import datetime
import http.server
import json
import os
import threading
import time
import urllib.parse
import urllib.request

import pytest

from cloudfiles_store import CloudFilesStore, ObjectInfo, OptionError, ProtocolError

ATTRS = dict(
    content_type="text/csv; charset=utf-8",
    cache_control="public, max-age=60",
    content_disposition='attachment; filename="t.csv"',
    metadata={"Owner": "alice", "run-id": "42"},
)

# what each backend keeps of a write besides the bytes
KEEPS_ALL = {"mem", "s3", "gs", "s3-seaweedfs"}


# ---------------------------------------------------------------- head on every backend

def test_head_size_etag_time(backend, store):
    before = time.time() - 5
    store["dir/a.bin"] = b"x" * 1234
    info = store.head("dir/a.bin")
    assert isinstance(info, ObjectInfo)
    assert info.key == "dir/a.bin" and info.size == 1234
    assert info.etag
    assert info.last_modified is not None and info.last_modified.tzinfo is not None
    assert before <= info.last_modified.timestamp() <= time.time() + 5
    with pytest.raises(KeyError):
        store.head("dir/missing")


def test_heads_and_exists_in_one_batch(backend, store):
    store.setitems({f"k{i}": bytes(i) for i in range(20)})
    keys = [f"k{i}" for i in range(25)]
    infos = store.heads(keys)
    assert sorted(infos) == sorted(f"k{i}" for i in range(20))
    assert all(infos[f"k{i}"].size == i for i in range(20))
    ex = store.exists(keys)
    assert list(ex) == keys
    assert [ex[k] for k in keys] == [True] * 20 + [False] * 5


def test_content_type_guessed_from_extension(backend, store):
    store.setitems({"a.json": b"{}", "b.png": b"\x89PNG", "c": b"?", "d.json.gz": b"", "e.CSV": b""})
    infos = store.heads(["a.json", "b.png", "c", "d.json.gz", "e.CSV"])
    if backend.name in ("http", "https"):
        return  # nginx serves types of its own: see test_http_sends_content_type
    assert infos["a.json"].content_type == "application/json"
    assert infos["b.png"].content_type == "image/png"
    assert infos["c"].content_type == "application/octet-stream"
    assert infos["d.json.gz"].content_type == "application/json"
    assert infos["e.CSV"].content_type == "text/csv"


def test_attributes_round_trip(backend, store):
    if backend.name not in KEEPS_ALL:
        with pytest.raises(OptionError, match="metadata|content_type|cache_control"):
            store.put("t.csv", b"a,b\n", **ATTRS)
        return
    store.put("t.csv", b"a,b\n", **ATTRS)
    info = store.head("t.csv")
    assert info.content_type == ATTRS["content_type"]
    assert info.cache_control == ATTRS["cache_control"]
    assert info.content_disposition == ATTRS["content_disposition"]
    assert dict(info.metadata) == {"owner": "alice", "run-id": "42"}  # names in lower case
    assert store["t.csv"] == b"a,b\n"
    # write_kwargs() writes another object with the same attributes
    store.put("copy.csv", b"z", **info.write_kwargs())
    again = store.head("copy.csv")
    assert (again.content_type, again.cache_control, dict(again.metadata)) == (
        info.content_type, info.cache_control, dict(info.metadata))


def test_store_defaults_and_per_call(backend, make_store):
    if backend.name not in KEEPS_ALL:
        with pytest.raises(OptionError, match="metadata"):
            make_store(metadata={"team": "x"})
        return
    s = make_store(cache_control="no-store", metadata={"team": "x"})
    s["a.txt"] = b"1"                      # the store's
    s.setitems({"b.txt": b"2", "c.txt": b"3"}, metadata={"run": "7"})   # merged
    s.put("d.txt", b"4", cache_control="max-age=1", metadata={"team": "y"})  # call wins
    h = s.heads(["a.txt", "b.txt", "c.txt", "d.txt"])
    assert h["a.txt"].cache_control == "no-store" and dict(h["a.txt"].metadata) == {"team": "x"}
    assert dict(h["b.txt"].metadata) == {"team": "x", "run": "7"}
    assert dict(h["c.txt"].metadata) == {"team": "x", "run": "7"}
    assert h["d.txt"].cache_control == "max-age=1" and dict(h["d.txt"].metadata) == {"team": "y"}
    assert all(i.content_type == "text/plain" for i in h.values())


def test_storage_class(backend, store):
    if backend.name not in KEEPS_ALL:
        with pytest.raises(OptionError, match="storage_class"):
            store.put("x", b"1", storage_class="STANDARD_IA")
        return
    cls = "NEARLINE" if backend.name == "gs" else "STANDARD_IA"
    if backend.name == "s3-seaweedfs":
        cls = "STANDARD"
    store.put("x", b"1", storage_class=cls)
    assert store.head("x").storage_class == cls


def test_listing_details(backend, store):
    store.setitems({"p/a": b"1", "p/b": b"22"})
    rows = store.entries("p/", details=True)
    assert [(r[0], r[1]) for r in rows] == [("p/a", 1), ("p/b", 2)]
    if backend.name in ("http", "https"):
        return  # nginx's JSON index: sizes only here
    for name, size, mtime, etag in rows:
        assert mtime is not None and abs(mtime - time.time()) < 600
        assert etag
    # the listing's ETag is the one HEAD gives (file:// and mem:// make their own)
    assert rows[1][3] == store.head("p/b").etag
    assert store.entries("p/") == [("p/a", 1), ("p/b", 2)]  # the plain form is unchanged


# ---------------------------------------------------------------- hostile values

@pytest.mark.parametrize("kwargs, field", [
    (dict(content_type="text/plain\r\nX-Injected: 1"), "content_type"),
    (dict(cache_control="a\nb"), "cache_control"),
    (dict(cache_control="a\tb"), "cache_control"),
    (dict(cache_control=" max-age=1"), "cache_control"),
    (dict(metadata={"n": "v "}), "metadata"),
    (dict(content_disposition="a\x00b"), "content_disposition"),
    (dict(content_type=""), "content_type"),
    (dict(content_type="x" * 5000), "content_type"),
    (dict(content_type="t\u00e9xt/plain"), "content_type"),
    (dict(content_type=b"text/plain"), "content_type"),
    (dict(storage_class="standard"), "storage_class"),
    (dict(storage_class="STANDARD\r\n"), "storage_class"),
    (dict(metadata={"bad name": "v"}), "metadata"),
    (dict(metadata={"a:b": "v"}), "metadata"),
    (dict(metadata={"": "v"}), "metadata"),
    (dict(metadata={"n": "v\r\nX-Injected: 1"}), "metadata"),
    (dict(metadata={"n": 1}), "metadata"),
    (dict(metadata={"n": "x" * 2100}), "metadata"),
    (dict(metadata={f"k{i}": "v" * 40 for i in range(60)}), "metadata"),  # > 2 KiB in all
    (dict(metadata={f"k{i}": "" for i in range(65)}), "metadata"),         # > 64 entries
    (dict(metadata={"A": "1", "a": "2"}), "metadata"),                     # the same name twice
    (dict(metadata="owner=me"), "metadata"),
])
def test_hostile_values_rejected(kwargs, field):
    s = CloudFilesStore(f"mem://hostile-{os.getpid()}")
    with pytest.raises(OptionError, match=field):
        s.put("k", b"v", **kwargs)
    with pytest.raises(OptionError, match=field):
        s.setitems({"k": b"v"}, **kwargs)
    with pytest.raises(OptionError, match=field):
        CloudFilesStore(f"mem://hostile-{os.getpid()}", **kwargs)
    assert "k" not in s  # nothing written


# ---------------------------------------------------------------- cross-reads

def test_s3_cross_read_with_boto3(moto_server):
    s = CloudFilesStore(moto_server.url("meta-x"), **moto_server.store_options())
    s.put("t.csv", b"a,b\n", storage_class="STANDARD_IA", **ATTRS)
    s["plain.json"] = b"{}"
    c = moto_server.client()
    h = c.head_object(Bucket=moto_server.bucket, Key="meta-x/t.csv")
    assert h["ContentType"] == ATTRS["content_type"]
    assert h["CacheControl"] == ATTRS["cache_control"]
    assert h["ContentDisposition"] == ATTRS["content_disposition"]
    assert h["StorageClass"] == "STANDARD_IA"
    assert h["Metadata"] == {"owner": "alice", "run-id": "42"}
    assert c.head_object(Bucket=moto_server.bucket, Key="meta-x/plain.json")["ContentType"] == "application/json"
    # and what boto3 writes, we read
    c.put_object(Bucket=moto_server.bucket, Key="meta-x/by-boto.txt", Body=b"hi",
                 ContentType="text/x-boto", Metadata={"From": "boto3"}, CacheControl="no-cache")
    info = s.head("by-boto.txt")
    assert (info.content_type, info.cache_control, dict(info.metadata)) == (
        "text/x-boto", "no-cache", {"from": "boto3"})
    assert info.storage_class == "STANDARD" and info.size == 2
    assert info.etag == h["ETag"] or info.etag.startswith('"')
    lm = c.head_object(Bucket=moto_server.bucket, Key="meta-x/by-boto.txt")["LastModified"]
    assert abs(info.last_modified - lm) < datetime.timedelta(seconds=1)


def test_s3_signed_requests_carry_attributes(moto_auth):
    """With signatures checked, the x-amz-meta-* and x-amz-storage-class headers are signed
    as SigV4 canonicalises them (inner runs of spaces included)."""
    s = CloudFilesStore(moto_auth.url("meta-signed"), **moto_auth.store_options())
    s.put("k.txt", b"v", storage_class="STANDARD_IA", cache_control="no-cache",
          metadata={"spaced": "a  b   c", "quote": 'x"y', "Mixed-Case": "1"})
    h = moto_auth.client().head_object(Bucket=moto_auth.bucket, Key="meta-signed/k.txt")
    assert h["StorageClass"] == "STANDARD_IA" and h["CacheControl"] == "no-cache"
    assert h["Metadata"]["quote"] == 'x"y' and h["Metadata"]["mixed-case"] == "1"
    assert dict(s.head("k.txt").metadata)["quote"] == 'x"y'
    assert hash(s.head("k.txt")) == hash(s.head("k.txt"))


def test_s3_multipart_upload_keeps_attributes(moto_server):
    s = CloudFilesStore(moto_server.url("meta-mpu"), multipart_threshold=5 * 1024 * 1024,
                        multipart_chunksize=5 * 1024 * 1024,
                        **moto_server.store_options())
    s.put("big.bin", b"z" * (6 * 1024 * 1024), content_type="application/x-big", metadata={"parts": "2"})
    h = moto_server.client().head_object(Bucket=moto_server.bucket, Key="meta-mpu/big.bin")
    assert h["ContentType"] == "application/x-big" and h["Metadata"] == {"parts": "2"}
    assert h["ETag"].endswith('-2"')


def _gcs_object(gcs_server, bucket, name):
    url = f"{gcs_server.url}/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}"
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def test_gcs_cross_read_with_json_api(gcs_server):
    from conftest import GCS_BUCKET
    s = CloudFilesStore(f"gs://{GCS_BUCKET}/meta-x", endpoint_url=gcs_server.url)
    s.put("t.csv", b"a,b\n", storage_class="NEARLINE", **ATTRS)
    s["plain.json"] = b"{}"
    o = _gcs_object(gcs_server, GCS_BUCKET, "meta-x/t.csv")
    assert o["contentType"] == ATTRS["content_type"]
    assert o["metadata"] == {"owner": "alice", "run-id": "42"}
    assert o["storageClass"] == "NEARLINE"
    assert o.get("cacheControl") == ATTRS["cache_control"]
    assert o.get("contentDisposition") == ATTRS["content_disposition"]
    assert _gcs_object(gcs_server, GCS_BUCKET, "meta-x/plain.json")["contentType"] == "application/json"
    info = s.head("t.csv")
    assert info.etag == o["etag"] and info.size == 4
    assert dict(info.metadata) == o["metadata"]


def test_gcs_resumable_upload_keeps_attributes(gcs_server):
    from conftest import GCS_BUCKET
    s = CloudFilesStore(f"gs://{GCS_BUCKET}/meta-r", endpoint_url=gcs_server.url,
                        resumable_threshold=256 * 1024, resumable_chunksize=256 * 1024)
    s.put("big.bin", b"r" * (600 * 1024), content_type="application/x-big", metadata={"k": "v"})
    o = _gcs_object(gcs_server, GCS_BUCKET, "meta-r/big.bin")
    assert o["contentType"] == "application/x-big" and o["metadata"] == {"k": "v"}


def test_http_content_type_is_the_servers(nginx):
    """nginx's WebDAV PUT keeps only the bytes: HEAD reports the type nginx gives."""
    s = CloudFilesStore(f"{nginx.url}/meta-{os.getpid()}-{time.time_ns()}")
    s.put("a.json", b"{}", content_type="application/json")
    info = s.head("a.json")
    assert info.content_type == "application/octet-stream"  # the tests' nginx: default_type
    assert info.size == 2 and info.etag and info.last_modified is not None
    with pytest.raises(OptionError, match="metadata.*http"):
        s.put("b", b"", metadata={"a": "b"})


class _KeepsHeaders(http.server.BaseHTTPRequestHandler):
    """A server that keeps each PUT's bytes and Content-Type, and answers HEAD with them
    and a fixed set of attributes."""
    protocol_version = "HTTP/1.1"
    objects = {}

    def do_PUT(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.objects[self.path] = (body, self.headers.get("Content-Type"))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self):
        if self.path not in self.objects:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body, ctype = self.objects[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", ctype)
        self.send_header("ETag", '"e1"')
        self.send_header("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")
        self.send_header("Cache-Control", "max-age=5")
        self.send_header("Content-Disposition", "inline")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_http_sends_content_type_and_reads_head():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KeepsHeaders)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        s = CloudFilesStore(f"http://127.0.0.1:{srv.server_address[1]}/root")
        s.put("a.csv", b"1,2", content_type="text/csv; header=present")
        s["b.json"] = b"{}"      # guessed
        s["c"] = b""             # no extension
        assert _KeepsHeaders.objects["/root/a.csv"] == (b"1,2", "text/csv; header=present")
        assert _KeepsHeaders.objects["/root/b.json"][1] == "application/json"
        assert _KeepsHeaders.objects["/root/c"][1] == "application/octet-stream"
        info = s.head("a.csv")
        assert info == ObjectInfo(
            key="a.csv", size=3, etag='"e1"',
            last_modified=datetime.datetime(1994, 11, 6, 8, 49, 37, tzinfo=datetime.timezone.utc),
            content_type="text/csv; header=present", cache_control="max-age=5",
            content_disposition="inline")
        assert s.exists(["a.csv", "zz"]) == {"a.csv": True, "zz": False}
    finally:
        srv.shutdown()
        srv.server_close()


def test_file_store_keeps_only_bytes(tmp_path):
    s = CloudFilesStore(f"file://{tmp_path}")
    s["a/b.json"] = b"{}"
    info = s.head("a/b.json")
    assert info.content_type == "application/json"  # by the name: a file keeps no type
    st = os.stat(tmp_path / "a" / "b.json")
    assert abs(info.last_modified.timestamp() - st.st_mtime) < 0.01
    assert sorted(os.listdir(tmp_path / "a")) == ["b.json"]  # no sidecar
    for kw in (dict(content_type="text/plain"), dict(metadata={"a": "b"}),
               dict(cache_control="no-cache"), dict(storage_class="COLDLINE")):
        with pytest.raises(OptionError, match="file store cannot store"):
            s.put("x", b"", **kw)
    with pytest.raises(OptionError, match="file store"):
        CloudFilesStore(f"file://{tmp_path}", content_type="text/plain")


class _HugeHeaders(http.server.BaseHTTPRequestHandler):
    """HEAD answers with `count` headers of 100 bytes each (the path says how many)."""

    def do_HEAD(self):
        count = int(self.path.rsplit("/", 1)[-1])
        self.send_response(200)
        self.send_header("Content-Length", "3")
        for i in range(count):
            self.send_header(f"X-Pad-{i}", "p" * 100)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def huge_header_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HugeHeaders)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_hostile_head_headers_bounded(huge_header_server):
    """A HEAD's headers are kept up to 16 KiB: more is an error, not memory without bound."""
    s = CloudFilesStore(huge_header_server, retries=1)
    assert s.head("10").size == 3
    with pytest.raises(ProtocolError, match="exceed"):
        s.head("1000")
