"""Compression: compress= on stores and calls, transparent decoding by Content-Encoding on
every backend, raw reads and writes, ranges of encoded objects, errors, cross-reads by
boto3 and the GCS JSON API, and interoperation with the real `cloud-files` package on
file://, S3 (moto) and GCS (fake-gcs-server), both ways."""
import gzip
import http.server
import json
import os
import threading
import urllib.request

import brotli
import pytest
import zstandard

from cloudfiles_store import CloudFilesStore
from cloudfiles_store.errors import ChecksumError, ProtocolError

import conftest

# Backends that keep an object's encoding: nginx's PUT drops Content-Encoding (README).
KEEPING = [b for b in ("mem", "file", "s3", "gs") if b in conftest._selected_backends()]
CODECS = ["gzip", "br", "zstd"]

VALUE = b"".join(b"row %06d: the quick brown fox jumps over the lazy dog\n" % i for i in range(2000))


@pytest.fixture(params=KEEPING)
def backend(request):
    return conftest.BACKENDS[request.param](request, conftest._unique())


def decode(data, encoding):
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "br":
        return brotli.decompress(data)
    if encoding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    assert encoding is None
    return data


# ------------------------------------------------------------------ every backend

@pytest.mark.parametrize("codec", CODECS)
def test_store_default_round_trip(make_store, codec):
    s = make_store(compress=codec)
    s["a/b"] = VALUE
    s.setitems({"a/c": VALUE, "a/d": b"tiny"})
    assert s["a/b"] == VALUE and s.getitems(["a/c"]) == {"a/c": VALUE}
    data, enc = s.get_raw("a/b")
    assert enc == codec and len(data) < len(VALUE) // 4
    assert decode(data, enc) == VALUE
    # a value that does not shrink is stored as it is
    assert s.get_raw("a/d") == (b"tiny", None)
    assert sorted(s) == ["a/b", "a/c", "a/d"]
    assert dict(s.iter_get(["a/b"])) == {"a/b": VALUE}
    assert dict(s.iter_get(["a/b"], raw=True))["a/b"][1] == codec


@pytest.mark.parametrize("codec", CODECS)
def test_per_call_and_levels(make_store, codec):
    s = make_store()
    s.put("k", VALUE, compress=codec, level=1)
    assert s.get_raw("k")[1] == codec and s["k"] == VALUE
    s.setitems({"k": VALUE}, compress=codec)
    assert s.get_raw("k")[1] == codec
    s.put("k", VALUE)  # the store's default: none
    assert s.get_raw("k") == (VALUE, None)
    with pytest.raises(ValueError, match="level 99"):
        s.put("k", VALUE, compress=codec, level=99)
    with pytest.raises(ValueError, match="compress must be"):
        s.put("k", VALUE, compress="lzma")


def test_per_call_overrides_store(make_store):
    s = make_store(compress="zstd", compress_level=1)
    s.setitems({"x": VALUE}, compress=False)
    assert s.get_raw("x") == (VALUE, None)
    s.put("y", VALUE, compress="gzip")
    assert s.get_raw("y")[1] == "gzip"
    s["z"] = VALUE
    assert s.get_raw("z")[1] == "zstd"


def test_compress_keys_rule(make_store):
    s = make_store(compress="gzip", compress_keys="zarr.json, .z*")
    meta = json.dumps({"zarr_format": 3, "attributes": {"x": list(range(300))}}).encode()
    s.setitems({"g/zarr.json": meta, "g/.zarray": meta, "g/c/0/0": VALUE})
    assert s.get_raw("g/zarr.json")[1] == "gzip"
    assert s.get_raw("g/.zarray")[1] == "gzip"
    assert s.get_raw("g/c/0/0") == (VALUE, None)
    assert s["g/zarr.json"] == meta


@pytest.mark.parametrize("codec", CODECS)
def test_raw_write_and_pairs(make_store, codec):
    s = make_store()
    enc = {"gzip": gzip.compress, "br": brotli.compress,
           "zstd": zstandard.ZstdCompressor().compress}[codec](VALUE)
    s.setitems({"r": enc}, raw=True, content_encoding=codec)
    assert s["r"] == VALUE
    assert s.get_raw("r") == (enc, codec)
    # raw reads feed raw writes as they are: (bytes, encoding) pairs
    s.setitems({"copy/" + k: v for k, v in s.getitems(["r"], raw=True).items()}, raw=True)
    assert s.get_raw("copy/r") == (enc, codec) and s["copy/r"] == VALUE
    s.put("p", enc, raw=True, content_encoding=codec)
    assert s["p"] == VALUE
    s.put("plain", b"as is", raw=True)
    assert s.get_raw("plain") == (b"as is", None)
    with pytest.raises(ValueError, match="content_encoding"):
        s.setitems({"r": enc}, content_encoding=codec)  # without raw=True
    with pytest.raises(ValueError):
        s.setitems({"r": enc}, raw=True, content_encoding="compress")


ENCODE = {"gzip": gzip.compress, "br": brotli.compress, "zstd": zstandard.ZstdCompressor().compress,
          None: bytes}


@pytest.mark.parametrize("given, stored", [("gzip", "zstd"), ("zstd", "br"), ("br", "gzip"),
                                           ("gzip", None), (None, "zstd")])
def test_a_raw_value_stored_in_another_encoding(make_store, given, stored):
    """raw=True with compress=: the value is decoded from the encoding it is given in and
    stored encoded with compress (False: decoded), as a stream on the engine's workers."""
    s = make_store()
    value = ENCODE[given](VALUE)
    s.setitems({"r": (value, given)}, raw=True, compress=stored if stored else False)
    data, enc = s.get_raw("r")
    assert enc == stored and decode(data, enc) == VALUE and s["r"] == VALUE
    s.put("p", value, raw=True, content_encoding=given, compress=stored or False,
          level=1 if stored else None)
    assert s.get_raw("p")[1] == stored and s["p"] == VALUE
    s.setitems({"same": (value, given)}, raw=True, compress=given or False)
    assert s.get_raw("same") == (value, given)  # already so: stored as it is


def test_a_raw_value_in_several_gzip_members_is_transcoded_whole(make_store):
    s = make_store()
    half = len(VALUE) // 2
    members = gzip.compress(VALUE[:half]) + gzip.compress(VALUE[half:])  # as bgzip writes
    s.setitems({"m": (members, "gzip")}, raw=True, compress="zstd")
    assert s.get_raw("m")[1] == "zstd" and s["m"] == VALUE


@pytest.mark.parametrize("damaged", [
    gzip.compress(VALUE)[:-9],                       # cut in its trailer
    gzip.compress(VALUE) + b"trailing",              # bytes after the member
    b"\x1f\x8b\x08\x00garbage-not-deflate-at-all",   # no deflate stream
])
def test_a_raw_value_that_does_not_decode_is_refused_and_stores_nothing(make_store, damaged):
    from cloudfiles_store import BatchError, CloudFilesError
    s = make_store()
    with pytest.raises(BatchError) as e:
        s.setitems({"bad": (damaged, "gzip"), "good": (gzip.compress(b"ok"), "gzip")},
                   raw=True, compress="zstd")
    assert [getattr(x, "key", None) for x in e.value.errors] == ["bad"]
    assert isinstance(e.value.errors[0], CloudFilesError)
    assert "not valid gzip data" in str(e.value.errors[0])
    assert "bad" not in s and s["good"] == b"ok"


def test_a_raw_value_that_decodes_past_the_limit_is_refused(make_store):
    s = make_store(max_decoded_size=100_000)
    with pytest.raises(Exception, match="max_decoded_size") as e:
        s.put("bomb", zstandard.ZstdCompressor().compress(b"\0" * 1_000_000), raw=True,
              content_encoding="zstd", compress="gzip")
    assert getattr(e.value, "key", None) == "bomb" and "bomb" not in s


@pytest.mark.parametrize("codec", CODECS)
def test_ranges_of_encoded_objects(make_store, codec):
    """A range of an encoded object is a range of its decoded bytes: the object is read
    whole, decoded, and cut (S3 and GCS would range the stored bytes)."""
    s = make_store(compress=codec)
    s["k"] = VALUE
    assert s.get_range("k", 10, 30) == VALUE[10:30]
    assert s.get_range("k", -7) == VALUE[-7:]
    assert s.get_range("k", 100) == VALUE[100:]
    assert s.get_ranges([("k", 0, 5), ("k", 5000, 5010), ("k", -3, None)]) == [
        VALUE[:5], VALUE[5000:5010], VALUE[-3:]]


def test_damaged_encoded_object_names_key(make_store):
    s = make_store()
    s.setitems({"bad": b"\x1f\x8b\x08\x00garbage-not-deflate-at-all"}, raw=True, content_encoding="gzip")
    with pytest.raises(ChecksumError) as ei:
        s["bad"]
    assert ei.value.key == "bad" and "gzip" in str(ei.value)
    assert s.get_raw("bad")[1] == "gzip"  # the stored bytes are still there to look at


def test_decoded_size_limit(make_store):
    s = make_store(max_decoded_size=1000)
    s.put("bomb", b"\0" * 1_000_000, compress="zstd")
    with pytest.raises(ProtocolError, match="max_decoded_size"):
        s["bomb"]
    assert len(s.get_raw("bomb")[0]) < 1000


def test_delete_removes_encoded(make_store):
    s = make_store(compress="gzip")
    s["d"] = VALUE
    del s["d"]
    assert "d" not in s and list(s) == []
    with pytest.raises(KeyError):
        s["d"]


# ------------------------------------------------------------------ file:// layout

def test_file_suffix_convention(tmp_path):
    s = CloudFilesStore(f"file://{tmp_path}", compress="gzip")
    s["x/k"] = VALUE
    assert sorted(os.listdir(tmp_path / "x")) == ["k.gz"]
    assert gzip.decompress((tmp_path / "x" / "k.gz").read_bytes()) == VALUE
    s.put("x/k", VALUE, compress="br")
    assert sorted(os.listdir(tmp_path / "x")) == ["k.br"]  # one variant per key
    s.put("x/k", VALUE, compress=False)
    assert sorted(os.listdir(tmp_path / "x")) == ["k"]
    s.put("x/k", VALUE, compress="zstd")
    assert sorted(os.listdir(tmp_path / "x")) == ["k.zstd"]
    assert list(s) == ["x/k"] and s.listdir("x") == ["k"]
    assert s.getsize("x/k") < len(VALUE)
    del s["x/k"]
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------ S3 and GCS cross-reads

@pytest.fixture
def s3(request):
    srv = request.getfixturevalue("moto_server")
    prefix = conftest._unique()
    return srv, prefix


@pytest.mark.parametrize("codec", CODECS)
def test_s3_boto3_sees_encoding(s3, codec):
    srv, prefix = s3
    s = CloudFilesStore(srv.url(prefix), compress=codec, **srv.store_options())
    s["k"] = VALUE
    r = srv.client().get_object(Bucket=srv.bucket, Key=f"{prefix}/k")
    assert r["ContentEncoding"] == codec
    assert decode(r["Body"].read(), codec) == VALUE


@pytest.mark.parametrize("header", ["gzip", "x-gzip", "br", "zstd"])
def test_s3_reads_what_other_tools_wrote(s3, header):
    srv, prefix = s3
    codec = "gzip" if header == "x-gzip" else header
    enc = {"gzip": gzip.compress, "br": brotli.compress,
           "zstd": zstandard.ZstdCompressor().compress}[codec](VALUE)
    srv.client().put_object(Bucket=srv.bucket, Key=f"{prefix}/o", Body=enc, ContentEncoding=header)
    s = CloudFilesStore(srv.url(prefix), **srv.store_options())
    assert s["o"] == VALUE
    assert s.get_raw("o") == (enc, codec)


def test_s3_identity_and_aws_chunked_are_plain(s3):
    srv, prefix = s3
    for enc in ("identity", "aws-chunked"):
        srv.client().put_object(Bucket=srv.bucket, Key=f"{prefix}/{enc}", Body=b"plain", ContentEncoding=enc)
    s = CloudFilesStore(srv.url(prefix), **srv.store_options())
    assert s.getitems(["identity", "aws-chunked"]) == {"identity": b"plain", "aws-chunked": b"plain"}


def test_s3_unknown_encoding_is_an_error(s3):
    srv, prefix = s3
    srv.client().put_object(Bucket=srv.bucket, Key=f"{prefix}/o", Body=b"xyz", ContentEncoding="compress")
    s = CloudFilesStore(srv.url(prefix), **srv.store_options())
    with pytest.raises(ProtocolError, match="'compress'") as ei:
        s["o"]
    assert ei.value.key == "o"
    assert s.get_raw("o") == (b"xyz", "compress")


@pytest.fixture
def gcs(request):
    srv = request.getfixturevalue("gcs_server")
    return srv, conftest._unique()


@pytest.mark.parametrize("codec", CODECS)
def test_gcs_json_api_sees_encoding(gcs, codec):
    srv, prefix = gcs
    s = CloudFilesStore(f"gs://{conftest.GCS_BUCKET}/{prefix}", compress=codec, endpoint_url=srv.url)
    s["k"] = VALUE
    name = urllib.request.quote(f"{prefix}/k", safe="")
    with urllib.request.urlopen(f"{srv.url}/storage/v1/b/{conftest.GCS_BUCKET}/o/{name}") as r:
        meta = json.load(r)
    assert meta["contentEncoding"] == codec
    assert int(meta["size"]) == len(s.get_raw("k")[0]) < len(VALUE)


# ------------------------------------------------------------------ plain HTTP servers

class _EncodedHandler(http.server.BaseHTTPRequestHandler):
    objects = {}

    def do_GET(self):
        body, enc = self.objects.get(self.path, (None, None))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        if enc:
            self.send_header("Content-Encoding", enc)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def encoding_http_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EncodedHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_http_decodes_by_content_encoding(encoding_http_server):
    gz = gzip.compress(VALUE)
    _EncodedHandler.objects.update({
        "/d/g": (gz, "gzip"), "/d/x": (gz, "x-gzip"),
        "/d/b": (brotli.compress(VALUE), "br"), "/d/z": (zstandard.ZstdCompressor().compress(VALUE), "zstd"),
        "/d/u": (b"abc", "compress"), "/d/p": (b"plain", None),
    })
    s = CloudFilesStore(encoding_http_server + "/d")
    assert s.getitems(["g", "x", "b", "z", "p"]) == {k: (VALUE if k != "p" else b"plain") for k in "gxbzp"}
    with pytest.raises(ProtocolError, match="compress"):
        s["u"]
    assert s.get_raw("x") == (gz, "gzip")


# ------------------------------------------------------------------ cloud-files interop

def _cf_s3(srv, prefix):
    from cloudfiles import CloudFiles
    opts = srv.store_options()
    secrets = {"AWS_ACCESS_KEY_ID": opts["access_key_id"], "AWS_SECRET_ACCESS_KEY": opts["secret_access_key"],
               "AWS_DEFAULT_REGION": opts.get("region", "us-east-1")}
    host = srv.endpoint  # CloudFiles' s3://http://host/bucket/path form: only the local moto
    return CloudFiles(f"s3://{host}/{srv.bucket}/{prefix}", secrets=secrets, green=False, progress=False)


def _cf_gcs(srv, prefix, monkeypatch):
    from cloudfiles import CloudFiles
    from google.auth.credentials import AnonymousCredentials
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", srv.url)  # google-cloud-storage talks only to it
    return CloudFiles(f"gs://{conftest.GCS_BUCKET}/{prefix}", secrets=AnonymousCredentials(),
                      green=False, progress=False)


@pytest.fixture(params=["file", "s3", "gs"])
def interop(request, tmp_path, monkeypatch):
    """(CloudFiles object, our store) on the same location."""
    kind = request.param
    if kind == "file":
        from cloudfiles import CloudFiles
        return CloudFiles(f"file://{tmp_path}", green=False, progress=False), \
            CloudFilesStore(f"file://{tmp_path}")
    if kind == "s3":
        srv = request.getfixturevalue("moto_server")
        prefix = conftest._unique()
        return _cf_s3(srv, prefix), CloudFilesStore(srv.url(prefix), **srv.store_options())
    srv = request.getfixturevalue("gcs_server")
    prefix = conftest._unique()
    return _cf_gcs(srv, prefix, monkeypatch), \
        CloudFilesStore(f"gs://{conftest.GCS_BUCKET}/{prefix}", endpoint_url=srv.url)


@pytest.mark.parametrize("codec", CODECS)
def test_interop_we_read_cloudfiles(interop, codec):
    cf, ours = interop
    cf.puts([(f"cf/{i}", VALUE + bytes([i])) for i in range(5)], compress=codec)
    cf.put("cf/plain", b"not compressed", compress=None)
    got = ours.getitems([f"cf/{i}" for i in range(5)] + ["cf/plain"])
    assert got == {**{f"cf/{i}": VALUE + bytes([i]) for i in range(5)}, "cf/plain": b"not compressed"}
    assert ours.get_raw("cf/0")[1] == codec
    assert sorted(ours.listdir("cf")) == ["0", "1", "2", "3", "4", "plain"]
    assert ours.get_range("cf/3", 4, 20) == (VALUE + b"\x03")[4:20]


@pytest.mark.parametrize("codec", CODECS)
def test_interop_cloudfiles_reads_ours(interop, codec):
    cf, ours = interop
    ours.setitems({f"us/{i}": VALUE + bytes([i]) for i in range(5)}, compress=codec)
    ours["us/plain"] = b"not compressed"
    assert ours.get_raw("us/0")[1] == codec
    for i in range(5):
        assert cf.get(f"us/{i}") == VALUE + bytes([i])
    assert cf.get("us/plain") == b"not compressed"
    assert sorted(cf.list("us/")) == sorted([f"us/{i}" for i in range(5)] + ["us/plain"])


# ------------------------------------------------------------------ zarr on compressing stores

zarr = pytest.importorskip("zarr")  # the zarr 2 environment runs test_zarr2_store.py only
from test_zarr3_store import TestZarrStore as _ZarrStoreTests  # noqa: E402


class TestZarrStoreCompressed(_ZarrStoreTests):
    """zarr 3's StoreTests on a store that gzips every write that shrinks."""

    @pytest.fixture
    def store_kwargs(self, backend):
        return {"url": backend.url, **backend.options, "compress": "gzip"}


class TestZarrStoreCompressedMetadataOnly(_ZarrStoreTests):
    """... and on one that compresses only zarr's metadata documents (zstd)."""

    @pytest.fixture
    def store_kwargs(self, backend):
        return {"url": backend.url, **backend.options, "compress": "zstd",
                "compress_keys": "zarr.json,.zarray,.zattrs,.zgroup,.zmetadata"}


def test_zarr_array_on_compressing_store(backend):
    import numpy as np
    from cloudfiles_store import ZarrStore
    s = backend.store(compress="gzip")
    zs = ZarrStore(backend.url, **backend.options, compress="gzip")
    want = np.arange(64 * 64, dtype="i4").reshape(64, 64) % 7
    a = zarr.create_array(store=zs, name="t", shape=(64, 64), chunks=(16, 16), dtype="i4",
                          compressors=None)
    a[:] = want
    assert s.get_raw("t/zarr.json")[1] == "gzip"
    assert s.get_raw("t/c/0/0")[1] == "gzip"  # uncompressed chunks shrink: gzipped here
    z = zarr.create_array(store=zs, name="z", shape=(64, 64), chunks=(16, 16), dtype="f8")
    z[:] = np.random.default_rng(0).random((64, 64))  # zstd-compressed by zarr: no gain
    assert s.get_raw("z/c/0/0")[1] is None
    assert (zarr.open_array(store=zs, path="t", mode="r")[:] == want).all()
