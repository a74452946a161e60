"""GCS (gs://) beyond the common mapping suite (which runs on gs:// through conftest's "gs"
backend): listing pages, uploads as stored, conditional create, checksums of downloads
against x-goog-hash through the fault server, and the OAuth flows end to end against a
token endpoint and a metadata server of our own (tests/gcsserver.py).

Servers: fake-gcs-server for the JSON API (it keeps x-goog-hash, pages listings and
answers 416); the project's fault server where a test must see request headers or damage
a response (it serves objects by path, so an object at
/storage/v1/b/BUCKET/o/NAME is what `gs://BUCKET/...` reads with endpoint_url=fault URL).
"""
import base64
import hashlib
import json
import os
import pickle
import struct
import time
import urllib.parse
import urllib.request
import uuid

import pytest

from cloudfiles_store import CloudFilesStore, engine_stats, errors
from conftest import GCS_BUCKET
from gcsserver import OAuthServer


# ------------------------------------------------------------------------- helpers

def crc32c(data):
    """Reference CRC32C (bitwise), independent of the C code."""
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF


def goog_hash(data, crc=True, md5=True):
    parts = []
    if crc:
        parts.append("crc32c=" + base64.b64encode(struct.pack(">I", crc32c(data))).decode())
    if md5:
        parts.append("md5=" + base64.b64encode(hashlib.md5(data).digest()).decode())
    return ",".join(parts)


def _unique():
    return uuid.uuid4().hex


@pytest.fixture(autouse=True)
def _no_ambient_google_env(monkeypatch, tmp_path):
    """Tests decide the credentials: none of the machine's own leak in."""
    for name in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GCE_METADATA_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))


@pytest.fixture
def gs(gcs_server):
    s = CloudFilesStore(f"gs://{GCS_BUCKET}/{_unique()}", endpoint_url=gcs_server.url)
    yield s
    s.close()


@pytest.fixture
def oauth():
    srv = OAuthServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def rsa_keys():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    def make():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        return key, pem
    return make(), make()


@pytest.fixture
def service_account(tmp_path, oauth, rsa_keys):
    """A service-account key file whose public key the token endpoint knows."""
    (key, pem), _ = rsa_keys
    email = "tester@cfs-test.iam.gserviceaccount.com"
    oauth.public_key = key.public_key()
    oauth.client_email = email
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "cfs-test", "private_key_id": "kid-1",
        "private_key": pem, "client_email": email, "client_id": "1",
        "token_uri": oauth.token_uri,
    }))
    return path


def _fault_store(fault_server, prefix, **options):
    options.setdefault("retry_base", 0.01)
    return CloudFilesStore(f"gs://bkt/{prefix}", endpoint_url=fault_server.url, **options)


def _object_path(prefix, key, bucket="bkt"):
    return f"/storage/v1/b/{bucket}/o/{prefix}/{key}"


def _bearer_tokens(fault_server, path):
    return [fault_server.header(r, "Authorization") for r in fault_server.requests(path)]


# ------------------------------------------------------------------ JSON API, emulator

def test_listing_across_pages(gs):
    """More than 1,000 keys: listings follow nextPageToken, one request per page."""
    n = 2300
    gs.setitems({f"k/{i:05d}": b"x" for i in range(n)})
    gs["k/sub/deeper"] = b"y"
    before = engine_stats()["requests"]
    names = gs.listdir("k")
    pages = engine_stats()["requests"] - before
    assert names == sorted([f"{i:05d}" for i in range(n)] + ["sub"])
    assert pages >= 3, f"{pages} listing requests for {n} names: pages were not followed"
    before = engine_stats()["requests"]
    assert len(gs) == n + 1
    assert engine_stats()["requests"] - before >= 3
    assert gs.getsize("k") == n  # one byte each, directly in k/


def test_listing_many_prefixes_across_pages(gs):
    """Common prefixes (directories) page too."""
    n = 1100
    gs.setitems({f"d/{i:05d}/x": b"" for i in range(n)})
    assert gs.listdir("d") == [f"{i:05d}" for i in range(n)]


def test_object_as_stored(gs, gcs_server):
    """The object lands under the prefix with our crc32c, readable by another client."""
    data = os.urandom(100_000)
    gs["dir/obj name+ü"] = data
    prefix = gs.url.split("/", 3)[3]
    name = f"{prefix}/dir/obj name+ü"
    q = urllib.parse.quote(name, safe="")
    with urllib.request.urlopen(f"{gcs_server.url}/storage/v1/b/{GCS_BUCKET}/o/{q}") as r:
        meta = json.load(r)
    assert int(meta["size"]) == len(data)
    assert base64.b64decode(meta["crc32c"]) == struct.pack(">I", crc32c(data))
    assert meta["contentType"] == "application/octet-stream"
    with urllib.request.urlopen(f"{gcs_server.url}/storage/v1/b/{GCS_BUCKET}/o/{q}?alt=media") as r:
        assert r.read() == data
    assert gcs_server.object_names(GCS_BUCKET, prefix + "/") == [name]


def test_written_by_another_client_read_by_us(gs, gcs_server):
    prefix = gs.url.split("/", 3)[3]
    body = b"from elsewhere"
    req = urllib.request.Request(
        f"{gcs_server.url}/upload/storage/v1/b/{GCS_BUCKET}/o?uploadType=media&name="
        + urllib.parse.quote(f"{prefix}/a/b c", safe=""),
        data=body, headers={"Content-Type": "application/octet-stream"}, method="POST")
    urllib.request.urlopen(req).read()
    assert gs["a/b c"] == body
    assert gs.listdir("a") == ["b c"]


def test_large_object_checked_roundtrip(gs):
    data = os.urandom(8 * 1024 * 1024 + 3)
    gs["big"] = data
    assert gs["big"] == data
    assert gs.get_range("big", 5_000_000, 5_000_010) == data[5_000_000:5_000_010]
    assert gs.getsize("big") == len(data)



# ------------------------------------------------------------- resumable uploads

MIB = 1024 * 1024


@pytest.fixture
def gcs_proxy(gcs_server):
    from gcsserver import GcsFaultProxy
    proxy = GcsFaultProxy(gcs_server.url).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def _proxied_store(proxy, **options):
    options.setdefault("retry_base", 0.01)
    options.setdefault("resumable_threshold", MIB)
    options.setdefault("resumable_chunksize", MIB)
    return CloudFilesStore(f"gs://{GCS_BUCKET}/{_unique()}", endpoint_url=proxy.url, **options)


def _emulator_object(gcs_server, store, key):
    prefix = store.url.split("/", 3)[3]
    q = urllib.parse.quote(f"{prefix}/{key}", safe="")
    with urllib.request.urlopen(f"{gcs_server.url}/storage/v1/b/{GCS_BUCKET}/o/{q}") as r:
        meta = json.load(r)
    with urllib.request.urlopen(f"{gcs_server.url}/storage/v1/b/{GCS_BUCKET}/o/{q}?alt=media") as r:
        return meta, r.read()


def _content_ranges(proxy):
    return [r["headers"].get("Content-Range") for r in proxy.chunk_requests()]


def test_resumable_upload_in_chunks(gcs_proxy, gcs_server):
    """20 MiB + 5 bytes with 1 MiB chunks: one session, 21 chunks in order with exact
    Content-Ranges, the object intact with our crc32c (sent in the session's metadata)."""
    data = os.urandom(20 * MIB + 5)
    s = _proxied_store(gcs_proxy)
    s["big"] = data
    starts = [r for r in gcs_proxy.requests if r["method"] == "POST"]
    assert len(starts) == 1
    assert starts[0]["query"]["uploadType"] == ["resumable"]
    assert starts[0]["query"]["name"][0].endswith("/big")
    assert starts[0]["headers"]["X-Upload-Content-Length"] == str(len(data))
    total = len(data)
    want = [f"bytes {i * MIB}-{min((i + 1) * MIB, total) - 1}/{total}" for i in range(21)]
    assert _content_ranges(gcs_proxy) == want
    meta, stored = _emulator_object(gcs_server, s, "big")
    assert stored == data
    assert base64.b64decode(meta["crc32c"]) == struct.pack(">I", crc32c(data))
    assert s["big"] == data


def test_resumable_metadata_carries_the_crc32c(gcs_proxy):
    """The session's start carries {"name", "crc32c"} so GCS checks the whole object."""
    data = os.urandom(MIB + 1)
    s = _proxied_store(gcs_proxy)
    s["k"] = data
    start = [r for r in gcs_proxy.requests if r["method"] == "POST"][0]
    assert start["headers"]["Content-Type"].startswith("application/json")
    assert start["body_size"] > 0
    assert len(_content_ranges(gcs_proxy)) == 2


def test_below_threshold_is_one_multipart_request(gcs_proxy):
    s = _proxied_store(gcs_proxy, resumable_threshold=4 * MIB)
    s["k"] = os.urandom(4 * MIB - 1)
    assert [(r["method"], r["query"].get("uploadType")) for r in gcs_proxy.requests] == [
        ("POST", ["multipart"])]


def test_resumable_chunk_failing_once_is_resent(gcs_proxy, gcs_server):
    """A chunk answered 503 (the server kept nothing): the client asks what the server
    holds, then sends that chunk again, once; the object is intact."""
    data = os.urandom(5 * MIB + 123)
    gcs_proxy.fail_chunks({2: "503"})
    s = _proxied_store(gcs_proxy)
    s["k"] = data
    kinds = [r["fault"] for r in gcs_proxy.requests if r["method"] == "PUT"]
    assert kinds == [None, None, "503", "query", None, None, None, None]
    ranges = _content_ranges(gcs_proxy)
    assert ranges[2] == ranges[3] == f"bytes {2 * MIB}-{3 * MIB - 1}/{len(data)}"
    assert _emulator_object(gcs_server, s, "k")[1] == data


def test_resumable_resumes_from_what_the_server_holds(gcs_proxy, gcs_server):
    """A chunk the server stored but whose answer was lost: the status query's Range says
    it is there, so the upload goes on with the next chunk, not from the start and not
    with that chunk again (the emulator appends blindly: a resent chunk would show)."""
    data = os.urandom(4 * MIB + 7)
    gcs_proxy.fail_chunks({1: "lost"})
    s = _proxied_store(gcs_proxy)
    s["k"] = data
    assert [r["fault"] for r in gcs_proxy.requests if r["method"] == "PUT"] == [
        None, "lost", "query", None, None, None]
    total = len(data)
    assert _content_ranges(gcs_proxy) == [
        f"bytes {i * MIB}-{min((i + 1) * MIB, total) - 1}/{total}" for i in range(5)]
    assert len([r for r in gcs_proxy.requests if r["method"] == "POST"]) == 1
    assert _emulator_object(gcs_server, s, "k")[1] == data


def test_resumable_partial_chunk_continues_from_the_range(gcs_proxy, gcs_server):
    """The server kept half a chunk (its 308 Range says so): the rest is sent from there."""
    data = os.urandom(3 * MIB + 1)
    gcs_proxy.fail_chunks({1: "partial"})
    s = _proxied_store(gcs_proxy)
    s["k"] = data
    total = len(data)
    half = MIB + MIB // 2
    assert _content_ranges(gcs_proxy) == [
        f"bytes 0-{MIB - 1}/{total}",
        f"bytes {MIB}-{2 * MIB - 1}/{total}",        # the proxy forwarded half of it
        f"bytes {half}-{half + MIB - 1}/{total}",
        f"bytes {half + MIB}-{total - 1}/{total}"]
    assert _emulator_object(gcs_server, s, "k")[1] == data


def test_resumable_chunk_failing_every_time_is_a_transient_error(gcs_proxy):
    """A chunk that always fails: sent `retries` times (a status query before each resend),
    then a TransientError naming the key, never the session URI (a capability)."""
    gcs_proxy.fail_chunks({i: "503" for i in range(1, 20)})
    s = _proxied_store(gcs_proxy, retries=3)
    with pytest.raises(errors.TransientError) as ei:
        s["k"] = os.urandom(3 * MIB)
    assert "upload_id" not in str(ei.value)
    assert "k" in str(ei.value)
    sends = [r["fault"] for r in gcs_proxy.requests if r["method"] == "PUT"]
    assert sends == [None, "503", "query", "503", "query", "503"]


async def test_resumable_conditional_create(gcs_proxy):
    """set_if_not_exists of a large value: the session starts with ifGenerationMatch=0,
    which GCS checks. fake-gcs-server does not: it drops the parameter from the session
    (its Location has no ifGenerationMatch) and overwrites, so only the request is checked
    here; the 412 -> "kept" path is test_conditional_create_zarr3's (one request)."""
    from zarr.core.buffer import default_buffer_prototype

    from cloudfiles_store.zarr3 import ZarrStore
    proto = default_buffer_prototype()
    first = os.urandom(2 * MIB)
    zs = ZarrStore(f"gs://{GCS_BUCKET}/{_unique()}", endpoint_url=gcs_proxy.url,
                   resumable_threshold=MIB, resumable_chunksize=MIB)
    await zs.set_if_not_exists("k", proto.buffer.from_bytes(first))
    assert (await zs.get("k", prototype=proto)).to_bytes() == first
    starts = [r for r in gcs_proxy.requests if r["method"] == "POST"]
    assert len(starts) == 1
    assert starts[0]["query"]["uploadType"] == ["resumable"]
    assert starts[0]["query"].get("ifGenerationMatch") == ["0"]


def test_resumable_options_are_checked(gcs_server):
    url = f"gs://{GCS_BUCKET}/x"
    with pytest.raises(errors.OptionError):
        CloudFilesStore(url, endpoint_url=gcs_server.url, resumable_chunksize=1000 * 1000)
    with pytest.raises(errors.OptionError):
        CloudFilesStore(url, endpoint_url=gcs_server.url, resumable_chunksize=128 * 1024)
    with pytest.raises(errors.OptionError):
        CloudFilesStore(url, endpoint_url=gcs_server.url, resumable_threshold=0)


def test_emulator_status_query_completes_the_upload(gcs_server):
    """Why GcsFaultProxy answers status queries itself: fake-gcs-server takes
    `Content-Range: bytes */N` as the final chunk and completes the object with what it
    has (GCS answers 308 and keeps the session open). If this fails, the emulator was
    fixed and the proxy can forward status queries."""
    import http.client
    host, port = gcs_server.url.rsplit("/", 1)[1].split(":")
    name = f"{_unique()}/q"
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", f"/upload/storage/v1/b/{GCS_BUCKET}/o?uploadType=resumable&name={name}",
                 body=json.dumps({"name": name}), headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    session = r.getheader("Location").split(gcs_server.url, 1)[1]
    conn.request("PUT", session, body=b"x" * 262144,
                 headers={"Content-Range": f"bytes 0-262143/{2 * 262144}"})
    r = conn.getresponse()
    r.read()
    assert r.status == 308
    conn.request("PUT", session, body=b"", headers={"Content-Range": f"bytes */{2 * 262144}"})
    r = conn.getresponse()
    r.read()
    conn.close()
    assert r.status == 200  # GCS would say 308, Range: bytes=0-262143



# ---------------------------------------------------------------- batch delete

def test_delitems_rmdir_clear_use_batch_requests(gcs_proxy, gcs_server):
    """delitems, rmdir and clear delete through POST /batch/storage/v1, at most 100 keys a
    request; missing keys are not failures; what is outside stays."""
    s = _proxied_store(gcs_proxy)
    s.setitems({f"d/{i:03d}": b"x" for i in range(250)})
    s.setitems({f"e/{i}": b"y" for i in range(5)})
    s["keep"] = b"k"
    gcs_proxy.requests.clear()
    s.rmdir("d")
    batches = [r for r in gcs_proxy.requests if r["path"] == "/batch/storage/v1"]
    assert len(batches) == 3
    assert all(r["headers"]["Content-Type"].startswith("multipart/mixed") for r in batches)
    assert not [r for r in gcs_proxy.requests if r["method"] == "DELETE"]
    assert sorted(s) == ["e/0", "e/1", "e/2", "e/3", "e/4", "keep"]
    s.delitems(["e/0", "e/1", "missing", "e/2"])
    assert sorted(s) == ["e/3", "e/4", "keep"]
    s.clear()
    assert list(s) == []
    prefix = s.url.split("/", 3)[3]
    assert gcs_server.object_names(GCS_BUCKET, prefix + "/") == []


def test_batch_delete_odd_names(gcs_proxy):
    keys = ["a b", "c+d", "ü/é", "x%2Fy", "q?r#s", "semi;colon", "eq=al"]
    s = _proxied_store(gcs_proxy)
    s.setitems({k: b"v" for k in keys})
    s["other"] = b"o"
    s.delitems(keys)
    assert list(s) == ["other"]


def test_batch_delete_transient_outer_failure_is_retried(gcs_proxy):
    """A 503 for the whole batch request: sent again after a backoff."""
    s = _proxied_store(gcs_proxy)
    s.setitems({f"k{i}": b"v" for i in range(10)})
    gcs_proxy.fail_path("/batch/storage/v1", ["503"])
    s.delitems([f"k{i}" for i in range(10)])
    assert list(s) == []
    assert len([r for r in gcs_proxy.requests if r["path"] == "/batch/storage/v1"]) == 2


def test_batch_delete_part_failures_are_per_key(gcs_proxy):
    """A batch refused as a whole (403): every key of it in the BatchError, as an
    authentication error. Part-level statuses (one part 403, another 503) cannot be made
    by fake-gcs-server: their mapping is tested on fixed responses in tests/c/backends/gcs/test_proto.c."""
    s = _proxied_store(gcs_proxy, retries=2)
    s.setitems({f"k{i}": b"v" for i in range(3)})
    gcs_proxy.fail_path("/batch/storage/v1", ["403"])
    with pytest.raises(errors.BatchError) as ei:
        s.delitems(["k0", "k1", "k2"])
    assert sorted(e.key for e in ei.value.errors) == ["k0", "k1", "k2"]
    assert all(isinstance(e, errors.AuthenticationError) for e in ei.value.errors)


def test_empty_object(gs):
    gs["empty"] = b""
    assert gs["empty"] == b""
    assert gs.getsize("empty") == 0


def test_range_past_the_end(gs):
    gs["small"] = b"0123456789"
    assert gs.get_range("small", 8, 100) == b"89"
    assert gs.get_range("small", -3, None) == b"789"
    assert gs.get_range("small", 50, 60) == b""  # the emulator's 416, as every backend


def _upload_gzip_encoded(gcs_server, name, plain):
    """Store `plain` gzip-compressed with Content-Encoding: gzip (as `gsutil cp -Z` does)."""
    import gzip
    meta = json.dumps({"name": name, "contentEncoding": "gzip", "contentType": "text/plain"})
    body = (b"--bb\r\nContent-Type: application/json\r\n\r\n" + meta.encode()
            + b"\r\n--bb\r\nContent-Type: text/plain\r\n\r\n" + gzip.compress(plain)
            + b"\r\n--bb--\r\n")
    req = urllib.request.Request(
        f"{gcs_server.url}/upload/storage/v1/b/{GCS_BUCKET}/o?uploadType=multipart", data=body,
        headers={"Content-Type": "multipart/related; boundary=bb"}, method="POST")
    urllib.request.urlopen(req).read()


def test_gzip_encoded_object_is_checked_and_decompressed(gs, gcs_server):
    """Its x-goog-hash is of the stored (compressed) bytes: they are fetched as stored,
    checked, and decompressed, instead of failing the check on the server's transcoding."""
    prefix = gs.url.split("/", 3)[3]
    plain = b"hello zarr " * 5000
    _upload_gzip_encoded(gcs_server, f"{prefix}/z", plain)
    before = engine_stats()["retries"]
    assert gs["z"] == plain
    assert gs.getitems(["z"]) == {"z": plain}
    assert engine_stats()["retries"] == before
    assert gs.get_range("z", 6, 10) == plain[6:10]  # served decompressed by the server


def test_missing_bucket_is_not_a_missing_key(gcs_server):
    s = CloudFilesStore(f"gs://no-such-bucket-{_unique()[:8]}/p", endpoint_url=gcs_server.url,
                        retry_base=0.01)
    with pytest.raises(KeyError):
        s["k"]
    with pytest.raises(errors.CloudFilesError) as ei:
        s.listdir()
    assert not isinstance(ei.value, KeyError)
    assert ei.value.status == 404


def test_bucket_root_store(gcs_server):
    bucket = f"cfs-root-{_unique()[:12]}"
    gcs_server.create_bucket(bucket)
    s = CloudFilesStore(f"gs://{bucket}", endpoint_url=gcs_server.url)
    s["top"] = b"1"
    s["d/x"] = b"2"
    assert s.listdir() == ["d", "top"]
    assert sorted(s) == ["d/x", "top"]
    assert s.url == f"gs://{bucket}"
    s.clear()
    assert len(s) == 0


def test_emulator_from_environment(gcs_server, monkeypatch):
    """STORAGE_EMULATOR_HOST (host:port, no scheme) is the endpoint, used anonymously."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.url.split("://", 1)[1])
    s = CloudFilesStore(f"gs://{GCS_BUCKET}/{_unique()}")
    s["k"] = b"via env"
    assert s["k"] == b"via env"


async def test_conditional_create_zarr3(gcs_server):
    """zarr 3's set_if_not_exists is one request with ifGenerationMatch=0 (412: present)."""
    from zarr.core.buffer import default_buffer_prototype

    from cloudfiles_store.zarr3 import ZarrStore
    proto = default_buffer_prototype()
    zs = ZarrStore(f"gs://{GCS_BUCKET}/{_unique()}", endpoint_url=gcs_server.url)
    await zs.set_if_not_exists("k", proto.buffer.from_bytes(b"first"))
    await zs.set_if_not_exists("k", proto.buffer.from_bytes(b"second"))
    got = await zs.get("k", prototype=proto)
    assert got.to_bytes() == b"first"


def test_upload_body_shape(fault_server):
    """What a real GCS reads: metadata JSON part with name and crc32c, then the bytes."""
    import email.parser
    import email.policy
    captured = {}

    import http.server
    import threading

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            n = int(self.headers["Content-Length"])
            captured["ctype"] = self.headers["Content-Type"]
            captured["path"] = self.path
            captured["body"] = self.rfile.read(n)
            data = b"payload \r\n--x"
            out = json.dumps({"name": "p/k", "size": str(len(data)),
                              "crc32c": base64.b64encode(struct.pack(">I", crc32c(data))).decode()}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    httpd = http.server.HTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        s = CloudFilesStore("gs://bkt/p", endpoint_url=f"http://127.0.0.1:{httpd.server_port}",
                            anon=True, retries=1)
        s["k"] = b"payload \r\n--x"
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert captured["path"] == "/upload/storage/v1/b/bkt/o?uploadType=multipart"
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + captured["ctype"].encode() + b"\r\n\r\n" + captured["body"])
    parts = list(msg.iter_parts())
    assert len(parts) == 2
    meta = json.loads(parts[0].get_payload(decode=True))
    assert meta["name"] == "p/k"
    assert base64.b64decode(meta["crc32c"]) == struct.pack(">I", crc32c(b"payload \r\n--x"))
    assert parts[1].get_payload(decode=True) == b"payload \r\n--x"


# -------------------------------------------------------------- checksums on download

@pytest.mark.parametrize("which", ["both", "crc32c", "md5"])
def test_corrupted_download_is_retried(fault_server, which):
    prefix = _unique()
    data = os.urandom(4096)
    path = _object_path(prefix, "k")
    fault_server.put(path, data, headers=[("X-Goog-Hash", goog_hash(
        data, crc=which != "md5", md5=which != "crc32c"))])
    fault_server.add_faults(path, ["corrupt"])
    s = _fault_store(fault_server, prefix, anon=True)
    assert s["k"] == data
    reqs = fault_server.requests(path, method="GET")
    assert [r.fault for r in reqs] == ["corrupt", None]


def test_corrupted_every_time_is_a_checksum_error(fault_server):
    prefix = _unique()
    data = b"z" * 1000
    path = _object_path(prefix, "k")
    fault_server.put(path, data, headers=[("X-Goog-Hash", goog_hash(data))])
    fault_server.add_faults(path, ["corrupt"] * 3)
    s = _fault_store(fault_server, prefix, anon=True, retries=3)
    with pytest.raises(errors.ChecksumError) as ei:
        s["k"]
    assert ei.value.attempts == 3
    assert ei.value.key == "k"
    assert "crc32c" in str(ei.value)
    got = s.getitems(["k"])  # the batch path: an error, never the damaged bytes
    assert got == {"k": data}  # faults used up: the fourth read is clean


def test_corrupted_bytes_never_reach_getitems(fault_server):
    prefix = _unique()
    objs = {f"k{i}": os.urandom(2000) for i in range(8)}
    for k, v in objs.items():
        fault_server.put(_object_path(prefix, k), v, headers=[("X-Goog-Hash", goog_hash(v))])
        fault_server.add_faults(_object_path(prefix, k), ["corrupt"] * (2 if k == "k3" else 1))
    s = _fault_store(fault_server, prefix, anon=True, retries=2)
    with pytest.raises(errors.BatchError) as ei:
        s.getitems(list(objs))
    failed = {e.key for e in ei.value.errors}
    assert failed == {"k3"}
    assert all(isinstance(e, errors.ChecksumError) for e in ei.value.errors)


def test_corrupted_gzip_encoded_download_is_retried(fault_server):
    import gzip
    prefix = _unique()
    plain = os.urandom(1000) * 3
    stored = gzip.compress(plain)
    path = _object_path(prefix, "k")
    fault_server.put(path, stored, headers=[("Content-Encoding", "gzip"),
                                            ("X-Goog-Hash", goog_hash(stored))])
    fault_server.add_faults(path, ["corrupt"])
    s = _fault_store(fault_server, prefix, anon=True)
    assert s["k"] == plain
    reqs = fault_server.requests(path, method="GET")
    assert [r.fault for r in reqs] == ["corrupt", None]
    assert fault_server.header(reqs[0], "Accept-Encoding") == "gzip"


def test_ranges_are_not_checked_against_the_whole_hash(fault_server):
    prefix = _unique()
    data = bytes(range(256)) * 4
    fault_server.put(_object_path(prefix, "k"), data, headers=[("X-Goog-Hash", goog_hash(data))])
    s = _fault_store(fault_server, prefix, anon=True)
    assert s.get_range("k", 10, 20) == data[10:20]


def test_malformed_hash_header_is_a_protocol_error(fault_server):
    prefix = _unique()
    fault_server.put(_object_path(prefix, "k"), b"abc", headers=[("X-Goog-Hash", "crc32c=!!!")])
    s = _fault_store(fault_server, prefix, anon=True)
    with pytest.raises(errors.ProtocolError):
        s["k"]


def test_gcs_errors_carry_the_server_message(fault_server):
    """An error body in GCS's JSON shape becomes the exception's text."""
    prefix = _unique()
    s = _fault_store(fault_server, prefix, anon=True)
    fault_server.add_faults(_object_path(prefix, "k"), ["403"])
    with pytest.raises(errors.AuthenticationError) as ei:
        s["k"]
    assert "anonymous" in str(ei.value)
    fault_server.add_faults(_object_path(prefix, "k"), ["503", "503"])
    fault_server.put(_object_path(prefix, "k"), b"ok")
    assert s["k"] == b"ok"


# ---------------------------------------------------------------------------- auth

def test_static_token(fault_server):
    prefix = _unique()
    fault_server.put(_object_path(prefix, "k"), b"v")
    s = _fault_store(fault_server, prefix, token="ya29.static-secret")
    assert s["k"] == b"v"
    assert _bearer_tokens(fault_server, _object_path(prefix, "k")) == ["Bearer ya29.static-secret"]
    assert "static-secret" not in repr(s)


def test_anonymous_sends_no_authorization(fault_server):
    prefix = _unique()
    fault_server.put(_object_path(prefix, "k"), b"v")
    assert _fault_store(fault_server, prefix, anon=True)["k"] == b"v"
    assert _bearer_tokens(fault_server, _object_path(prefix, "k")) == [None]


def test_service_account_jwt_flow(fault_server, oauth, service_account):
    """Key file -> RS256 JWT (verified by the token endpoint) -> access token, cached."""
    prefix = _unique()
    for i in range(5):
        fault_server.put(_object_path(prefix, f"k{i}"), b"v%d" % i)
    s = _fault_store(fault_server, prefix, credentials=str(service_account))
    assert s["k0"] == b"v0"
    assert oauth.rejections == []
    assert [g[0] for g in oauth.grants] == ["jwt"]
    claims = oauth.grants[0][1]["claims"]
    assert claims["iss"] == oauth.client_email and claims["aud"] == oauth.token_uri
    assert oauth.grants[0][1]["header"]["kid"] == "kid-1"
    tok = oauth.issued[0]
    assert _bearer_tokens(fault_server, _object_path(prefix, "k0")) == [f"Bearer {tok}"]
    # later requests reuse the cached token
    assert s.getitems([f"k{i}" for i in range(5)]) == {f"k{i}": b"v%d" % i for i in range(5)}
    assert s.get_range("k1", 0, 1) == b"v"
    assert len(oauth.issued) == 1
    for i in range(5):
        assert set(_bearer_tokens(fault_server, _object_path(prefix, f"k{i}"))) == {f"Bearer {tok}"}
    # no secret in what the store shows
    text = repr(s) + repr(pickle.loads(pickle.dumps(s)))
    assert tok not in text and "PRIVATE KEY" not in text


def test_service_account_from_environment(fault_server, oauth, service_account, monkeypatch):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(service_account))
    prefix = _unique()
    fault_server.put(_object_path(prefix, "k"), b"v")
    assert _fault_store(fault_server, prefix)["k"] == b"v"
    assert [g[0] for g in oauth.grants] == ["jwt"]


def test_token_refreshed_before_expiry(fault_server, oauth, service_account):
    """Past the refresh point one op fetches a new token while the others keep using the
    old one (still usable), then everyone uses the new one. A token of lifetime L is
    refreshed from L/2 before expiry and dropped L/10 before it (capped at 300 s / 60 s)."""
    prefix = _unique()
    keys = [f"k{i}" for i in range(20)]
    for k in keys:
        fault_server.put(_object_path(prefix, k), b"v")
    oauth.expires_in = 12  # refresh from 6 s, usable until 10.8 s
    s = _fault_store(fault_server, prefix, credentials=str(service_account), concurrency=4)
    assert s["k0"] == b"v"
    assert s["k1"] == b"v"
    assert len(oauth.issued) == 1
    time.sleep(6.5)
    oauth.expires_in = 3600
    fault_server.clear_requests()
    assert len(s.getitems(keys)) == 20
    assert len(oauth.issued) == 2, "one refresh, not one per request"
    first, second = oauth.issued
    seen = [t for k in keys for t in _bearer_tokens(fault_server, _object_path(prefix, k))]
    assert len(seen) == 20
    # the refreshing op used the new token; the others went on with the old one meanwhile
    assert set(seen) == {f"Bearer {first}", f"Bearer {second}"}
    fault_server.clear_requests()
    assert s["k5"] == b"v"
    assert _bearer_tokens(fault_server, _object_path(prefix, "k5")) == [f"Bearer {second}"]
    assert len(oauth.issued) == 2


def test_expired_token_is_not_used(fault_server, oauth, service_account):
    prefix = _unique()
    fault_server.put(_object_path(prefix, "k"), b"v")
    oauth.expires_in = 1  # usable for 0.9 s
    s = _fault_store(fault_server, prefix, credentials=str(service_account))
    assert s["k"] == b"v"
    time.sleep(1.0)
    assert s["k"] == b"v"
    assert len(oauth.issued) == 2
    assert _bearer_tokens(fault_server, _object_path(prefix, "k")) == [f"Bearer {t}" for t in oauth.issued]


def test_401_fetches_a_new_token_once(fault_server, oauth, service_account):
    prefix = _unique()
    path = _object_path(prefix, "k")
    fault_server.put(path, b"v")
    s = _fault_store(fault_server, prefix, credentials=str(service_account))
    fault_server.add_faults(path, ["401"])
    assert s["k"] == b"v"
    assert len(oauth.issued) == 2
    assert _bearer_tokens(fault_server, path) == [f"Bearer {t}" for t in oauth.issued]
    fault_server.add_faults(path, ["401", "401"])
    with pytest.raises(errors.AuthenticationError):
        s["k"]


def test_forked_child_keeps_using_the_token(fault_server, oauth, service_account):
    prefix = _unique()
    fault_server.put(_object_path(prefix, "k"), b"v")
    s = _fault_store(fault_server, prefix, credentials=str(service_account))
    assert s["k"] == b"v"
    pid = os.fork()
    if pid == 0:  # the child: a fresh engine, the same cached token
        code = 1
        try:
            code = 0 if s["k"] == b"v" and s.getitems(["k"]) == {"k": b"v"} else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert len(oauth.issued) == 1
    assert _bearer_tokens(fault_server, _object_path(prefix, "k")) == [f"Bearer {oauth.issued[0]}"] * 3


def test_token_endpoint_transient_failure_is_retried(fault_server, oauth, service_account):
    prefix = _unique()
    fault_server.put(_object_path(prefix, "k"), b"v")
    oauth.failures = [503, 429]
    s = _fault_store(fault_server, prefix, credentials=str(service_account))
    assert s["k"] == b"v"
    assert len(oauth.issued) == 1


def test_wrong_key_is_an_authentication_error(fault_server, oauth, service_account, rsa_keys, tmp_path):
    """A key the token endpoint does not know: refused, reported with the token URL."""
    _, (_, other_pem) = rsa_keys
    doc = json.loads(service_account.read_text())
    doc["private_key"] = other_pem
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps(doc))
    prefix = _unique()
    s = _fault_store(fault_server, prefix, credentials=str(bad))
    with pytest.raises(errors.AuthenticationError) as ei:
        s["k"]
    assert oauth.rejections == ["bad signature"]
    assert ei.value.url == oauth.token_uri
    assert "bad signature" in str(ei.value)
    assert "PRIVATE" not in str(ei.value) and "assertion" not in str(ei.value)
    assert fault_server.requests(_object_path(prefix, "k")) == []


def test_authorized_user_flow(fault_server, oauth, tmp_path):
    oauth.user = ("client-id-1", "client-secret-1", "refresh-1")
    adc = tmp_path / "adc.json"
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "client-id-1",
                               "client_secret": "client-secret-1", "refresh_token": "refresh-1"}))
    prefix = _unique()
    fault_server.put(_object_path(prefix, "k"), b"v")
    s = _fault_store(fault_server, prefix, credentials=str(adc), token_uri=oauth.token_uri)
    assert s["k"] == b"v"
    assert [g[0] for g in oauth.grants] == ["refresh"]
    assert _bearer_tokens(fault_server, _object_path(prefix, "k")) == [f"Bearer {oauth.issued[0]}"]
    assert "client-secret-1" not in repr(s) and "refresh-1" not in repr(s)


def test_authorized_user_from_the_gcloud_well_known_file(fault_server, oauth, tmp_path, monkeypatch):
    oauth.user = ("cid", "csecret", "rtoken")
    cfg = tmp_path / "gcloud"
    cfg.mkdir()
    (cfg / "application_default_credentials.json").write_text(json.dumps({
        "type": "authorized_user", "client_id": "cid", "client_secret": "csecret",
        "refresh_token": "rtoken"}))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(cfg))
    prefix = _unique()
    fault_server.put(_object_path(prefix, "k"), b"v")
    s = _fault_store(fault_server, prefix, token_uri=oauth.token_uri)
    assert s["k"] == b"v"
    assert [g[0] for g in oauth.grants] == ["refresh"]


def test_bad_refresh_token_is_an_authentication_error(fault_server, oauth, tmp_path):
    oauth.user = ("cid", "csecret", "rtoken")
    adc = tmp_path / "adc.json"
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "cid",
                               "client_secret": "csecret", "refresh_token": "stale"}))
    s = _fault_store(fault_server, _unique(), credentials=str(adc), token_uri=oauth.token_uri)
    with pytest.raises(errors.AuthenticationError) as ei:
        s["k"]
    assert "invalid_grant" in str(ei.value)
    assert "stale" not in str(ei.value) and "csecret" not in str(ei.value)


@pytest.mark.parametrize("how", ["option", "env"])
def test_metadata_server_flow(fault_server, oauth, monkeypatch, how):
    prefix = _unique()
    fault_server.put(_object_path(prefix, "k"), b"v")
    if how == "env":
        monkeypatch.setenv("GCE_METADATA_HOST", oauth.metadata_host)
        s = _fault_store(fault_server, prefix)
    else:
        s = _fault_store(fault_server, prefix, metadata_host=oauth.metadata_host)
    assert s["k"] == b"v"
    assert s["k"] == b"v"
    assert [g[0] for g in oauth.grants] == ["metadata"]
    assert oauth.rejections == []
    assert _bearer_tokens(fault_server, _object_path(prefix, "k")) == [f"Bearer {oauth.issued[0]}"] * 2


def test_no_credentials_anywhere_is_anonymous(fault_server):
    prefix = _unique()
    fault_server.put(_object_path(prefix, "k"), b"v")
    assert _fault_store(fault_server, prefix)["k"] == b"v"
    assert _bearer_tokens(fault_server, _object_path(prefix, "k")) == [None]


def test_auth_against_the_emulator(gcs_server, oauth, service_account):
    """The whole mapping works with a token flow in front (the emulator ignores tokens)."""
    s = CloudFilesStore(f"gs://{GCS_BUCKET}/{_unique()}", endpoint_url=gcs_server.url,
                        credentials=str(service_account))
    s.setitems({f"a/{i}": b"%d" % i for i in range(50)})
    assert s.listdir("a") == sorted(str(i) for i in range(50))
    assert s.getitems(["a/7"]) == {"a/7": b"7"}
    assert 1 <= len(oauth.issued) <= 64


# -------------------------------------------------------------------------- options

def test_option_errors(tmp_path, service_account):
    with pytest.raises(errors.OptionError):
        CloudFilesStore("gs://")
    with pytest.raises(errors.OptionError):
        CloudFilesStore("gs://b/p", token="t", anon=True)
    with pytest.raises(errors.OptionError):
        CloudFilesStore("gs://b/p", token="t", credentials=str(service_account))
    with pytest.raises(errors.OptionError, match="cannot read credentials"):
        CloudFilesStore("gs://b/p", credentials=str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"type": "service_account", "client_email": "x@y",
                               "private_key": "-----BEGIN PRIVATE KEY-----\nnot a key\n"
                                              "-----END PRIVATE KEY-----\n"}))
    with pytest.raises(errors.OptionError) as ei:
        CloudFilesStore("gs://b/p", credentials=str(bad))
    assert "not a key" not in str(ei.value)
    weird = tmp_path / "weird.json"
    weird.write_text(json.dumps({"type": "external_account"}))
    with pytest.raises(errors.OptionError, match="external_account"):
        CloudFilesStore("gs://b/p", credentials=str(weird))
    with pytest.raises(errors.OptionError):
        CloudFilesStore("gs://b/p", endpoint_url="ftp://x")
    with pytest.raises(errors.OptionError):
        CloudFilesStore("gs://b/p", no_such_option=1)
    with pytest.raises(errors.OptionError):
        CloudFilesStore("gs://b/p", token="bad token\n")


def test_url_forms(gcs_server):
    s = CloudFilesStore(f"gs://{GCS_BUCKET}//a/b//", endpoint_url=gcs_server.url)
    s["k"] = b"v"  # extra slashes around the prefix are dropped
    t = CloudFilesStore(f"gs://{GCS_BUCKET}/a/b", endpoint_url=gcs_server.url)
    assert t["k"] == b"v"
    with pytest.raises(errors.CloudFilesError) as ei:
        s["a\nb"] = b"x"  # GCS names cannot hold CR or LF
    assert not isinstance(ei.value, KeyError)


def test_cold_start_fetches_one_token_for_a_whole_batch(fault_server, oauth, service_account):
    """The first window of a batch finds no token: one op fetches it while the others wait
    for it (CFS_BUILD_WAIT), instead of one token request per op in flight."""
    prefix = _unique()
    keys = [f"k{i}" for i in range(60)]
    for k in keys:
        fault_server.put(_object_path(prefix, k), b"v")
    oauth.expires_in = 3600
    before = len(oauth.issued)
    s = _fault_store(fault_server, prefix, credentials=str(service_account), concurrency=32)
    assert s.getitems(keys) == {k: b"v" for k in keys}
    assert len(oauth.issued) - before == 1
    first = oauth.issued[-1]
    seen = {t for k in keys for t in _bearer_tokens(fault_server, _object_path(prefix, k))}
    assert seen == {f"Bearer {first}"}


def test_missing_bucket_is_its_own_error(gcs_server):
    """fake-gcs-server answers 404 "Not Found" for a missing bucket and a missing object
    alike (GCS itself says "The specified bucket does not exist"): a read of a key stays a
    KeyError there, but a listing or an upload can only miss the bucket."""
    s = CloudFilesStore("gs://no-such-bucket-here/x", endpoint_url=gcs_server.url)
    for call in (lambda: list(s), lambda: s.__setitem__("k", b"v")):
        with pytest.raises(errors.BucketNotFoundError) as ei:
            call()
        assert not isinstance(ei.value, KeyError)
        assert "no-such-bucket-here" in str(ei.value)
    with pytest.raises(errors.BatchError) as ei:
        s.setitems({"a": b"1", "b": b"2"})
    assert {type(e).__name__ for e in ei.value.errors} == {"BucketNotFoundError"}


@pytest.mark.parametrize("name", ["a\rb", "a\nb", "n" * 1025])
def test_invalid_object_names_are_invalid_keys(gs, name):
    with pytest.raises(errors.InvalidKeyError, match="GCS object names"):
        gs[name] = b"v"
    with pytest.raises(errors.BatchError) as ei:
        gs.setitems({name: b"v", "fine": b"w"})
    assert [type(e).__name__ for e in ei.value.errors] == ["InvalidKeyError"]
    assert gs["fine"] == b"w"
