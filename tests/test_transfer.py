"""store.transfer_to: any backend to any backend, on the server where it can be, memory
bounded, failures listed with the rest completed. Real servers: moto, fake-gcs-server,
nginx, local directories."""
import os
import re
import uuid

import pytest

from cloudfiles_store import BatchError, CloudFilesStore, engine_stats
from cloudfiles_store import _transfer
from conftest import GCS_BUCKET


def _objects(n, size=1000, prefix="d/"):
    return {f"{prefix}{i:04d}": os.urandom(size) for i in range(n)}


def _s3(moto_server, prefix=None, **extra):
    return CloudFilesStore(moto_server.url(prefix or uuid.uuid4().hex),
                           **moto_server.store_options(**extra))


def _gcs(gcs_server, bucket=GCS_BUCKET, prefix=None):
    return CloudFilesStore(f"gs://{bucket}/{prefix or uuid.uuid4().hex}", endpoint_url=gcs_server.url)


def _object_gets(moto_server, bucket_path):
    """moto's log lines of GETs of objects under bucket_path (listings excluded)."""
    return [ln for ln in moto_server.log().splitlines()
            if re.search(rf'"GET /{re.escape(bucket_path)}/\S+ HTTP', ln) and "list-type" not in ln]


def test_file_to_s3(tmp_path, moto_server):
    src = CloudFilesStore(f"file://{tmp_path}")
    data = _objects(50)
    src.setitems(data)
    dest = _s3(moto_server)
    summary = src.transfer_to(dest)
    assert summary == {"objects": 50, "bytes": 50 * 1000, "server_side": 0}
    assert dest.getitems(list(data)) == data


def test_prefix_and_key_mapping(tmp_path, moto_server):
    src = CloudFilesStore(f"file://{tmp_path}")
    src.setitems({"a/1": b"one", "a/2": b"two", "b/1": b"other"})
    dest = _s3(moto_server)
    assert src.transfer_to(dest, prefix="a/")["objects"] == 2
    assert sorted(dest.keys()) == ["a/1", "a/2"]
    src.transfer_to(dest, keys={"b/1": "renamed/b"})
    assert dest["renamed/b"] == b"other"


def test_s3_to_gcs(moto_server, gcs_server):
    src = _s3(moto_server)
    data = _objects(40, 5000)
    src.setitems(data)
    dest = _gcs(gcs_server)
    summary = src.transfer_to(dest)
    assert summary["objects"] == 40 and summary["server_side"] == 0
    assert dest.getitems(list(data)) == data


def test_s3_to_s3_server_side(moto_server):
    prefix = uuid.uuid4().hex
    src = _s3(moto_server, prefix)
    data = _objects(30, 20_000)
    src.setitems(data)
    dest = _s3(moto_server, uuid.uuid4().hex, concurrency=8)  # another root, same account
    assert _transfer.server_side_possible(src, dest)
    summary = src.transfer_to(dest)
    assert summary == {"objects": 30, "bytes": 30 * 20_000, "server_side": 30}
    # the bytes never came here: moto served no GET of the source objects
    assert _object_gets(moto_server, f"{moto_server.bucket}/{prefix}") == []
    assert dest.getitems(list(data)) == data


def test_s3_to_s3_other_bucket_server_side(moto_server):
    bucket = f"other-{uuid.uuid4().hex[:12]}"
    moto_server.client().create_bucket(Bucket=bucket)
    src = _s3(moto_server)
    src.setitems({"k": b"v" * 100})
    dest = CloudFilesStore(f"s3://{bucket}/x", **moto_server.store_options())
    assert src.transfer_to(dest)["server_side"] == 1
    assert moto_server.client().get_object(Bucket=bucket, Key="x/k")["Body"].read() == b"v" * 100


def test_different_credentials_stream(moto_server):
    src = _s3(moto_server)
    dest = CloudFilesStore(moto_server.url(uuid.uuid4().hex),
                           **moto_server.store_options(access_key_id="other"))
    assert not _transfer.server_side_possible(src, dest)


def test_s3_multipart_copy(moto_server):
    """Over the threshold the copy goes as UploadPartCopy parts (5 GiB in use; lowered)."""
    prefix = uuid.uuid4().hex
    mib = 1 << 20
    src = _s3(moto_server, prefix)
    big = os.urandom(12 * mib + 123)
    src["big"] = big
    src["small"] = b"s"
    dest = _s3(moto_server, uuid.uuid4().hex, multipart_copy_threshold=8 * mib,
               multipart_copy_chunksize=5 * mib)
    summary = src.transfer_to(dest)
    assert summary == {"objects": 2, "bytes": len(big) + 1, "server_side": 2}
    assert dest["big"] == big and dest["small"] == b"s"
    parts = [ln for ln in moto_server.log().splitlines()
             if f"/{dest.url.split('/', 3)[3]}/big?" in ln and "partNumber=" in ln and '"PUT' in ln]
    assert len(parts) == 3, parts
    assert _object_gets(moto_server, f"{moto_server.bucket}/{prefix}") == []


def test_gcs_to_gcs_rewrite(gcs_server):
    src = _gcs(gcs_server)
    data = _objects(20, 3000)
    src.setitems(data)
    other = f"xfer-{uuid.uuid4().hex[:10]}"
    gcs_server.create_bucket(other)
    dest = _gcs(gcs_server, bucket=other)
    before = engine_stats()["requests"]
    summary = src.transfer_to(dest)
    requests = engine_stats()["requests"] - before
    assert summary["server_side"] == 20
    assert requests == 20 + 1  # one listing page and a rewrite each: no GET, no upload
    assert dest.getitems(list(data)) == data


def test_http_to_file(nginx, tmp_path):
    src = CloudFilesStore(f"{nginx.url}/{uuid.uuid4().hex}")
    data = _objects(25, 2000)
    src.setitems(data)
    dest = CloudFilesStore(f"file://{tmp_path}")
    assert src.transfer_to(dest)["objects"] == 25
    for k, v in data.items():
        assert (tmp_path / k).read_bytes() == v


def test_memory_bounded(tmp_path, monkeypatch):
    """Many objects through a small window: never more than the window held."""
    src = CloudFilesStore(f"file://{tmp_path}/src")
    data = _objects(300, 10_000)
    src.setitems(data)
    dest = CloudFilesStore(f"file://{tmp_path}/dst", concurrency=4)
    held = {"now": 0, "max": 0}
    read_raw, write_raw = _transfer._read_raw, _transfer._write_raw

    def counting_read(store, keys, decode=False):
        for key, value, enc in read_raw(store, keys, decode):
            held["now"] += len(value)
            held["max"] = max(held["max"], held["now"])
            yield key, value, enc

    def counting_write(store, items, reencode=None, attrs=None):
        write_raw(store, items, reencode, attrs)
        held["now"] -= sum(len(v) for _k, v, _e in items)

    monkeypatch.setattr(_transfer, "_read_raw", counting_read)
    monkeypatch.setattr(_transfer, "_write_raw", counting_write)
    window = 100_000
    summary = src.transfer_to(dest, window=window)
    assert summary["objects"] == 300
    assert 0 < held["max"] <= window
    assert held["now"] == 0
    assert dest.getitems(list(data)) == data


def test_failures_listed_rest_completed(tmp_path, moto_server):
    src = CloudFilesStore(f"file://{tmp_path}")
    data = _objects(20)
    src.setitems(data)
    dest = _s3(moto_server)
    keys = list(data) + ["missing/1", "missing/2"]
    with pytest.raises(BatchError) as ei:
        src.transfer_to(dest, keys=keys)
    assert sorted(ei.value.failed) == ["missing/1", "missing/2"]
    assert "missing/1" in str(ei.value)
    assert ei.value.summary["objects"] == 20
    assert dest.getitems(list(data)) == data


def test_server_side_failures_listed(moto_server):
    src = _s3(moto_server)
    src.setitems({"a": b"1", "b": b"2"})
    dest = _s3(moto_server)
    with pytest.raises(BatchError) as ei:
        src.transfer_to(dest, keys=["a", "nope", "b"])
    assert ei.value.failed == ["nope"]
    assert ei.value.summary == {"objects": 2, "bytes": 0, "server_side": 2}
    assert dest.getitems(["a", "b"]) == {"a": b"1", "b": b"2"}


def test_bad_arguments(tmp_path):
    src = CloudFilesStore(f"file://{tmp_path}")
    with pytest.raises(TypeError):
        src.transfer_to(src, keys="abc")
    with pytest.raises(ValueError, match="reencode"):
        src.transfer_to(src, reencode="lz4")
    with pytest.raises(ValueError):
        src.transfer_to(src, window=0)


def test_large_object_read_in_ranges(tmp_path, fault_server, monkeypatch):
    """A large object streams as parallel ranged GETs, joined and checked by size."""
    base = f"/{uuid.uuid4().hex}"
    big = os.urandom(3 * 1024 * 1024 + 17)
    fault_server.put(f"{base}/big", big)
    fault_server.put(f"{base}/small", b"tiny")
    monkeypatch.setattr(_transfer, "LARGE_OBJECT", 1024 * 1024)
    monkeypatch.setattr(_transfer, "RANGE_PART", 1024 * 1024)
    src = CloudFilesStore(fault_server.url + base)
    dest = CloudFilesStore(f"file://{tmp_path}")
    summary = src.transfer_to(dest, keys=[("big", "big", len(big)), ("small", "small", 4)])
    assert summary == {"objects": 2, "bytes": len(big) + 4, "server_side": 0}
    assert (tmp_path / "big").read_bytes() == big
    gets = [r for r in fault_server.requests(f"{base}/big") if r.method == "GET"]
    assert len(gets) == 4 and all(fault_server.header(r, "range") for r in gets)
    # a size that no longer matches the listing fails that key only
    with pytest.raises(BatchError) as ei:
        src.transfer_to(dest, keys=[("big", "big2", len(big) + 5), ("small", "small2", 4)])
    assert ei.value.failed == ["big"] and (tmp_path / "small2").read_bytes() == b"tiny"
    with pytest.raises(BatchError) as ei:  # grown since it was listed
        src.transfer_to(dest, keys=[("big", "big3", len(big) - 5)])
    assert ei.value.failed == ["big"] and not (tmp_path / "big3").exists()


def test_cli_cp_between_buckets_is_server_side(moto_server, tmp_path):
    """`cp -r` between two buckets of one endpoint, same options: copied on the server."""
    import subprocess
    import sys
    bucket = f"cli-{uuid.uuid4().hex[:12]}"
    moto_server.client().create_bucket(Bucket=bucket)
    prefix = uuid.uuid4().hex
    src = _s3(moto_server, prefix)
    data = _objects(12, 3000, prefix="t/")
    src.setitems(data)
    opts = []
    for k, v in moto_server.store_options().items():
        opts += ["-o", f"{k}={v}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run([sys.executable, "-m", "cloudfiles_store", "cp", "-r", "-q",
                        f"{moto_server.url(prefix)}/t/", f"s3://{bucket}/copy/", *opts],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    dest = CloudFilesStore(f"s3://{bucket}/copy", **moto_server.store_options())
    assert dest.getitems([k[2:] for k in data]) == {k[2:]: v for k, v in data.items()}
    assert _object_gets(moto_server, f"{moto_server.bucket}/{prefix}") == []


def test_encoded_objects_keep_their_encoding(tmp_path, moto_server):
    """Streamed, an object stays as stored: the gzip bytes and their Content-Encoding."""
    src = CloudFilesStore(f"file://{tmp_path}/src", compress="gzip")
    value = b"compressible " * 1000
    src.setitems({"a": value, "b": value})
    dest = _s3(moto_server)
    assert src.transfer_to(dest)["objects"] == 2
    stored, encoding = dest.get_raw("a")
    assert encoding == "gzip" and len(stored) < len(value)
    assert stored == src.get_raw("a")[0]
    assert dest.getitems(["a", "b"]) == {"a": value, "b": value}


@pytest.mark.parametrize("reencode,expected", [("zstd", "zstd"), (False, None)])
def test_reencode(tmp_path, reencode, expected):
    src = CloudFilesStore(f"file://{tmp_path}/src", compress="gzip")
    value = b"compressible " * 1000
    src["k"] = value
    dest = CloudFilesStore(f"mem://{uuid.uuid4().hex}")
    src.transfer_to(dest, reencode=reencode)
    assert dest.get_raw("k")[1] == expected
    assert dest["k"] == value


def test_large_encoded_object_keeps_its_encoding(tmp_path, moto_server, monkeypatch):
    """A large object read in ranges is read as ranges of its stored bytes: a gzip object
    arrives as the same gzip bytes with its Content-Encoding; reencode reads it decoded."""
    monkeypatch.setattr(_transfer, "LARGE_OBJECT", 64 * 1024)
    monkeypatch.setattr(_transfer, "RANGE_PART", 64 * 1024)
    src = _s3(moto_server)
    value = b"".join(b"row %08d, compressible\n" % i for i in range(200000))
    src.put("big", value, compress="gzip")
    stored, encoding = src.get_raw("big")
    assert encoding == "gzip" and len(stored) > 3 * 64 * 1024  # several ranges
    dest = CloudFilesStore(f"file://{tmp_path}/dest")
    assert src.transfer_to(dest) == {"objects": 1, "bytes": len(stored), "server_side": 0}
    assert (tmp_path / "dest" / "big.gz").read_bytes() == stored
    assert dest["big"] == value
    mem = CloudFilesStore(f"mem://{uuid.uuid4().hex}")
    src.transfer_to(mem, reencode="zstd")
    assert mem.get_raw("big")[1] == "zstd" and mem["big"] == value


def test_s3_multipart_copy_keeps_attributes(moto_server):
    """UploadPartCopy copies bytes only: the upload is created with the source's attributes
    (read by a HEAD first), so the copy keeps them as a CopyObject does."""
    mib = 1 << 20
    src = _s3(moto_server)
    big = os.urandom(8 * mib).hex().encode()  # gzip takes it to about half
    src.put("big.csv", big, compress="gzip", level=1, content_type="text/csv; charset=utf-8",
            cache_control="public, max-age=60", content_disposition='attachment; filename="b.csv"',
            metadata={"Owner": "alice", "run-id": "42"})
    dest = _s3(moto_server, uuid.uuid4().hex, multipart_copy_threshold=5 * mib,
               multipart_copy_chunksize=5 * mib)
    stored = src.head("big.csv").size  # the gzip-encoded bytes
    assert src.head("big.csv").content_encoding == "gzip" and stored > 5 * mib
    summary = src.transfer_to(dest)
    assert summary["server_side"] == 1
    dest_key = f"{dest.url.split('/', 3)[3]}/big.csv"
    parts = [ln for ln in moto_server.log().splitlines()
             if f"/{dest_key}?" in ln and "partNumber=" in ln and '"PUT' in ln]
    assert len(parts) == -(-stored // (5 * mib)) >= 2, parts  # part copies, not CopyObject
    h = moto_server.client().head_object(Bucket=moto_server.bucket, Key=dest_key)
    assert h["ContentType"] == "text/csv; charset=utf-8"
    assert h["CacheControl"] == "public, max-age=60"
    assert h["ContentDisposition"] == 'attachment; filename="b.csv"'
    assert h["ContentEncoding"] == "gzip"
    assert h["Metadata"] == {"owner": "alice", "run-id": "42"}
    assert h["ContentLength"] == stored
    assert dest["big.csv"] == big  # decoded by its Content-Encoding


def test_s3_multipart_copy_missing_source(moto_server):
    """The source's HEAD finds it gone: an error naming it and its URL, nothing uploaded."""
    mib = 1 << 20
    src = _s3(moto_server)
    dest = _s3(moto_server, uuid.uuid4().hex, multipart_copy_threshold=5 * mib)
    with pytest.raises(BatchError) as e:
        src.transfer_to(dest, keys=[("gone", "gone", 6 * mib)])
    assert e.value.failed == ["gone"]
    (err,) = e.value.errors
    assert "not found" in str(err) and str(err).endswith(f"{src.url.split('/', 3)[3]}/gone]")
    assert "gone" not in dest


def test_s3_multipart_copy_source_changed(moto_server):
    """A source whose size is not the listed one changed since: its parts would copy the
    wrong bytes, so the copy fails, saying so."""
    mib = 1 << 20
    src = _s3(moto_server)
    src["k"] = b"x" * (6 * mib)
    dest = _s3(moto_server, uuid.uuid4().hex, multipart_copy_threshold=5 * mib)
    with pytest.raises(BatchError) as e:
        src.transfer_to(dest, keys=[("k", "k", 7 * mib)])
    assert e.value.failed == ["k"]
    (err,) = e.value.errors
    assert "changed since" in str(err) and "6291456 bytes" in str(err), err
    assert "k" not in dest


# ------------------------------------------------- streamed copies keep the attributes

# objects of three sets of attributes (and one with none given): each written with its own
_ATTRS = {
    "a/t.csv": dict(content_type="text/csv; charset=utf-8", cache_control="public, max-age=60",
                    content_disposition='attachment; filename="t.csv"',
                    metadata={"Owner": "alice", "run-id": "42"}),
    "a/u.csv": dict(content_type="text/csv; charset=utf-8", cache_control="public, max-age=60",
                    content_disposition='attachment; filename="t.csv"',
                    metadata={"Owner": "alice", "run-id": "42"}),
    "b/img": dict(content_type="image/x-test", cache_control="no-store",
                  content_disposition="inline", metadata={"owner": "bob"}),
    "c/plain.json": {},
}


def _write_sources(src, storage_class=None):
    for key, attrs in _ATTRS.items():
        extra = {"storage_class": storage_class} if storage_class and attrs else {}
        src.put(key, key.encode() * 500, compress="gzip", **attrs, **extra)


def _s3_head(moto_server, store, key):
    return moto_server.client().head_object(Bucket=moto_server.bucket,
                                            Key=f"{store.url.split('/', 3)[3]}/{key}")


def _gcs_head(gcs_server, store, key):
    import json
    import urllib.parse
    import urllib.request
    name = f"{store.url.split('/', 3)[3]}/{key}"
    url = f"{gcs_server.url}/storage/v1/b/{GCS_BUCKET}/o/{urllib.parse.quote(name, safe='')}"
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def _check_s3_dest(moto_server, dest, storage_class="STANDARD"):
    for key, attrs in _ATTRS.items():
        h = _s3_head(moto_server, dest, key)
        assert h["ContentEncoding"] == "gzip", key
        assert dest[key] == key.encode() * 500
        if not attrs:
            assert h["ContentType"] == "application/json"  # guessed at the source, kept
            assert "CacheControl" not in h and h["Metadata"] == {}
            continue
        assert h["ContentType"] == attrs["content_type"], key
        assert h["CacheControl"] == attrs["cache_control"], key
        assert h["ContentDisposition"] == attrs["content_disposition"], key
        assert h["Metadata"] == {k.lower(): v for k, v in attrs["metadata"].items()}, key
        assert h.get("StorageClass", "STANDARD") == storage_class, key


def test_s3_to_gcs_keeps_attributes(moto_server, gcs_server):
    src = _s3(moto_server)
    _write_sources(src, storage_class="STANDARD_IA")
    dest = _gcs(gcs_server)
    assert src.transfer_to(dest) == {"objects": 4, "bytes": sum(src.head(k).size for k in _ATTRS),
                                     "server_side": 0}
    for key, attrs in _ATTRS.items():
        o = _gcs_head(gcs_server, dest, key)
        assert o.get("contentEncoding") == "gzip", key
        assert dest[key] == key.encode() * 500
        # an S3 storage class means nothing to GCS: the bucket's default
        assert o["storageClass"] == "STANDARD", key
        if not attrs:
            assert o["contentType"] == "application/json" and not o.get("metadata")
            continue
        assert o["contentType"] == attrs["content_type"], key
        assert o.get("cacheControl") == attrs["cache_control"], key
        assert o.get("contentDisposition") == attrs["content_disposition"], key
        assert o["metadata"] == {k.lower(): v for k, v in attrs["metadata"].items()}, key


def test_gcs_to_s3_keeps_attributes(moto_server, gcs_server):
    src = _gcs(gcs_server)
    _write_sources(src, storage_class="NEARLINE")
    dest = _s3(moto_server)
    assert src.transfer_to(dest)["objects"] == 4
    _check_s3_dest(moto_server, dest)  # NEARLINE is GCS's: S3's default


def test_mem_to_s3_keeps_attributes(moto_server):
    src = CloudFilesStore(f"mem://{uuid.uuid4().hex}")
    _write_sources(src)
    dest = _s3(moto_server)
    assert src.transfer_to(dest)["objects"] == 4
    _check_s3_dest(moto_server, dest)


def test_s3_to_other_s3_keeps_attributes_and_storage_class(moto_server):
    """Another account (other keys: streamed) of the same service kind: the storage class
    is kept too."""
    src = _s3(moto_server)
    _write_sources(src, storage_class="STANDARD_IA")
    dest = _s3(moto_server, access_key_id="other")
    assert not _transfer.server_side_possible(src, dest)
    assert src.transfer_to(dest)["server_side"] == 0
    _check_s3_dest(moto_server, dest, storage_class="STANDARD_IA")


def _heads_of(moto_server, store):
    prefix = store.url.split("/", 3)[3]
    return [ln for ln in moto_server.log().splitlines()
            if re.search(rf'"HEAD /{moto_server.bucket}/{re.escape(prefix)}/\S+ HTTP', ln)]


def test_attributes_false_skips_the_heads(moto_server, gcs_server):
    src = _s3(moto_server)
    _write_sources(src)
    dest = _gcs(gcs_server)
    assert src.transfer_to(dest, attributes=False)["objects"] == 4
    assert _heads_of(moto_server, src) == []
    o = _gcs_head(gcs_server, dest, "b/img")
    assert o["contentType"] == "application/octet-stream" and not o.get("metadata")
    assert o.get("contentEncoding") == "gzip"  # the bytes as stored: always kept
    src.transfer_to(dest)
    assert len(_heads_of(moto_server, src)) == 4  # one HEAD an object
    assert _gcs_head(gcs_server, dest, "b/img")["contentType"] == "image/x-test"


def test_file_destination_takes_no_attributes(moto_server, tmp_path):
    """file:// stores bytes only: no HEADs, and the copy works as before."""
    src = _s3(moto_server)
    _write_sources(src)
    dest = CloudFilesStore(f"file://{tmp_path}/dst")
    assert src.transfer_to(dest)["objects"] == 4
    assert _heads_of(moto_server, src) == []
    assert dest.getitems(list(_ATTRS)) == {k: k.encode() * 500 for k in _ATTRS}
    assert dest.get_raw("b/img")[1] == "gzip"


def test_attributes_the_destination_refuses_fail_that_object(moto_server):
    """Attributes the destination cannot store (here: the source's metadata with the
    destination store's own, over S3's 2 KiB): that object fails, naming it; the rest are
    copied."""
    src = CloudFilesStore(f"mem://{uuid.uuid4().hex}")
    src.put("ok", b"1", metadata={"fine": "yes"})
    src.put("bad", b"2", metadata={"big": "y" * 1000, "bigger": "z" * 990})
    dest = _s3(moto_server, metadata={"team": "t" * 100})
    with pytest.raises(BatchError) as e:
        src.transfer_to(dest)
    assert e.value.failed == ["bad"]
    (err,) = e.value.errors
    assert err.key == "bad" and err.url == dest.url and "metadata" in str(err)
    assert dest["ok"] == b"1" and "bad" not in dest
    assert dict(dest.head("ok").metadata) == {"fine": "yes", "team": "t" * 100}


def test_http_source_gives_its_content_type():
    """An http:// source has a content type only (whatever else its HEAD says: an http
    store keeps no other attribute): kept under another name, where the destination would
    guess another."""
    import http.server
    import threading

    from test_metadata import _KeepsHeaders

    class Serves(_KeepsHeaders):  # answers HEAD with Cache-Control and Content-Disposition
        objects = {}

        def do_GET(self):
            body, ctype = self.objects[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", ctype)
            self.end_headers()
            self.wfile.write(body)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Serves)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        src = CloudFilesStore(f"http://127.0.0.1:{srv.server_address[1]}/root")
        src.put("a.csv", b"1,2", content_type="text/csv; header=present")
        src["b.json"] = b"{}"
        dest = CloudFilesStore(f"mem://{uuid.uuid4().hex}")
        assert src.transfer_to(dest, keys={"a.csv": "x/a", "b.json": "x/b"})["objects"] == 2
        a = dest.head("x/a")
        assert a.content_type == "text/csv; header=present" and dest["x/a"] == b"1,2"
        assert a.cache_control is None and a.content_disposition is None
        assert dest.head("x/b").content_type == "application/json"
    finally:
        srv.shutdown()
        srv.server_close()
