"""The S3 backend against real servers on 127.0.0.1.

- moto's S3 server (tests/s3server.py): listing across pages, content type and ETag as
  stored, anonymous access, conditional create; and a second moto with signature checking
  on (INITIAL_NO_AUTH_ACTION_COUNT + an IAM user): right key works, wrong secret or key id
  is an AuthenticationError.
- the project's fault server (tests/servers/faultserver.py) as an S3 endpoint: the exact
  headers sent (Content-MD5, x-amz-content-sha256, Authorization...), the ETag check with
  corrupted bodies, retries.
- a canned-response server here (S3 error XML bodies): SlowDown/InternalError/RequestTimeout
  retried, AccessDenied/NoSuchBucket mapped, malformed listings refused.
- S3's additional checksums: what moto does with x-amz-checksum-* (stores without checking;
  its departures from AWS are xfail, see the table in tests/s3server.py), that our single
  and multipart uploads carry the right CRC32C (read back with x-amz-checksum-mode), and
  that a body that does not match its checksum is retried, then a ChecksumError: a wrong
  checksum stored through botocore (moto does not refuse it) and bodies corrupted by the
  fault server, whose objects may carry any checksum headers; ranged reads are not checked.

The common mapping suite runs on S3 too (the "s3" entry of conftest.BACKENDS).
"""
import base64
import hashlib
import http.server
import os
import pickle
import struct
import threading
import time
import urllib.parse
import uuid

import pytest

from cloudfiles_store import CloudFilesStore, engine_stats, errors

AKID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLE/token+with=chars"


def _unique():
    return uuid.uuid4().hex


def crc32c_b64(data):
    """x-amz-checksum-crc32c of data: base64 of the big-endian CRC32C (the crc32c package,
    which moto[s3crc32c] brings, independent of the C code)."""
    import crc32c
    return base64.b64encode(struct.pack(">I", crc32c.crc32c(data))).decode()


def _root(store):
    return store.url.split("/", 3)[3]


@pytest.fixture
def s3(moto_server):
    """A store on a fresh prefix of the session's moto bucket."""
    prefix = _unique()
    s = CloudFilesStore(moto_server.url(prefix), **moto_server.store_options())
    yield s
    s.close()


# ----------------------------------------------------------------------- moto: basics

def test_listing_across_pages(s3, moto_server):
    keys = [f"k/{i:05d}" for i in range(2500)] + ["top"]
    s3.setitems({k: k.encode() for k in keys})
    before = engine_stats()["requests"]
    listed = sorted(s3)
    after = engine_stats()["requests"]
    assert listed == sorted(keys)
    assert after - before >= 3, "2,501 keys take at least 3 ListObjectsV2 pages"
    assert len(s3) == len(keys)
    assert sorted(s3.listdir()) == ["k", "top"]
    assert len(s3.listdir("k")) == 2500
    # The same through botocore: every key is where it should be.
    c = moto_server.client()
    pages = c.get_paginator("list_objects_v2").paginate(Bucket=moto_server.bucket, Prefix=s3.url.split("/", 3)[3] + "/")
    assert sum(p.get("KeyCount", 0) for p in pages) == len(keys)


def test_listdir_with_many_directories(s3):
    s3.setitems({f"d{i:04d}/x": b"1" for i in range(1100)})
    s3["d0000/y/z"] = b"2"
    names = s3.listdir()
    assert sorted(names) == [f"d{i:04d}" for i in range(1100)]
    assert sorted(s3.listdir("d0000")) == ["x", "y"]
    s3.rmdir("d0001")
    assert "d0001/x" not in s3
    assert len(s3) == 1100


def test_objects_as_stored(s3, moto_server):
    data = bytes(range(256)) * 1000
    s3["obj"] = data
    key = s3.url.split("/", 3)[3] + "/obj"
    head = moto_server.client().head_object(Bucket=moto_server.bucket, Key=key)
    assert head["ContentType"] == "application/octet-stream"
    assert head["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    assert head["ContentLength"] == len(data)
    assert s3["obj"] == data
    assert s3.getsize("obj") == len(data)


def test_written_by_botocore_read_by_us(s3, moto_server):
    root = s3.url.split("/", 3)[3]
    c = moto_server.client()
    keys = ["plain", "sp ace/x", "plus+/y", "\u00fcml\u00e4ut", "a!b*c:d~e%f"]
    for k in keys:
        c.put_object(Bucket=moto_server.bucket, Key=f"{root}/{k}", Body=k.encode())
    assert sorted(s3) == sorted(keys)
    assert s3.getitems(keys) == {k: k.encode() for k in keys}


def test_virtual_hosted_addressing(moto_server):
    """bucket.localhost:PORT (libcurl resolves every *.localhost to the loopback)."""
    endpoint = moto_server.endpoint.replace("127.0.0.1", "localhost")
    prefix = _unique()
    s = CloudFilesStore(moto_server.url(prefix), **moto_server.store_options(
        endpoint_url=endpoint, addressing_style="virtual"))
    s["dir/k y"] = b"virtual"
    assert s["dir/k y"] == b"virtual"
    assert list(s) == ["dir/k y"]
    c = moto_server.client()
    assert c.get_object(Bucket=moto_server.bucket, Key=f"{prefix}/dir/k y")["Body"].read() == b"virtual"


def test_missing_bucket_is_not_a_missing_key(moto_server):
    s = CloudFilesStore("s3://no-such-bucket-here/x", **moto_server.store_options())
    # (del s["k"] looks with a HEAD first, whose 404 has no body to tell a bucket by)
    for call in (lambda: s["k"], lambda: list(s), lambda: s.__setitem__("k", b"v")):
        with pytest.raises(errors.BucketNotFoundError, match="NoSuchBucket") as ei:
            call()
        assert not isinstance(ei.value, KeyError)
        assert "no-such-bucket-here" in str(ei.value)
    for batch in (lambda: s.setitems({"a": b"1", "b": b"2"}), lambda: s.delitems(["a", "b"])):
        with pytest.raises(errors.BatchError) as ei:
            batch()
        assert {type(e).__name__ for e in ei.value.errors} == {"BucketNotFoundError"}


def test_a_write_never_raises_key_error(moto_server, s3):
    """moto answers a PUT of a key holding a newline with an HTML 404 (its router does not
    match it; AWS stores such keys): a refused write, never a missing key."""
    with pytest.raises(errors.RequestError, match="answered a write with 'not found'") as ei:
        s3["a\nb"] = b"v"
    assert not isinstance(ei.value, KeyError)


def test_options_mask_secrets_and_pickles_keep_them(moto_server):
    opts = moto_server.store_options(access_key_id=AKID, secret_access_key=SECRET, session_token=TOKEN)
    s = CloudFilesStore(moto_server.url("p"), **opts)
    shown = s.options
    assert shown["secret_access_key"] == "***" and shown["session_token"] == "***"
    assert shown["access_key_id"] == AKID and SECRET not in repr(shown) and TOKEN not in repr(shown)
    s["k"] = b"v"
    assert pickle.loads(pickle.dumps(s))["k"] == b"v"  # the rebuilt store signs with them


def test_long_keys_are_shortened_in_messages(s3):
    key = "d/" + "x" * 5000
    with pytest.raises(KeyError):
        s3[key]
    s3.close()
    with pytest.raises(ValueError) as ei:
        s3[key] = b"v"
    with pytest.raises(errors.InvalidKeyError) as ei:
        CloudFilesStore("mem://long").__setitem__(key + "/../x", b"v")
    msg = str(ei.value)
    assert len(msg) < 400 and "(5007 characters)" in msg and msg.count("x") < 200


def test_long_keys_are_shortened_in_operation_errors(moto_server):
    s = CloudFilesStore("s3://no-such-bucket-here/x", **moto_server.store_options())
    key = "k" * 5000
    with pytest.raises(errors.BucketNotFoundError) as ei:
        s[key] = b"v"
    assert ei.value.key == key
    assert len(str(ei.value)) < 800 and "(5000 characters)" in str(ei.value)


def test_anonymous_read(moto_server, s3):
    s3["public"] = b"for all"
    key = s3.url.split("/", 3)[3] + "/public"
    moto_server.client().put_object_acl(Bucket=moto_server.bucket, Key=key, ACL="public-read")
    anon = CloudFilesStore(s3.url, endpoint_url=moto_server.endpoint, anon=True)
    assert anon["public"] == b"for all"
    assert "public" in anon
    assert "secret" not in repr(anon).lower()


def test_pickle_and_repr_hold_no_secret(moto_server):
    opts = moto_server.store_options(access_key_id=AKID, secret_access_key=SECRET, session_token=TOKEN)
    s = CloudFilesStore(moto_server.url("p"), **opts)
    assert SECRET not in repr(s) and TOKEN not in repr(s)
    clone = pickle.loads(pickle.dumps(s))  # the user's own options travel, as given
    assert clone == s
    assert clone.url == s.url


def test_conditional_create(s3):
    """If-None-Match: * through the async put of the engine (zarr 3's set_if_not_exists)."""
    import asyncio
    from cloudfiles_store import _core
    if not hasattr(_core, "Completions"):
        pytest.fail("the engine's async Completions is missing")

    async def run():
        loop = asyncio.get_running_loop()
        comp = _core.Completions()
        loop.add_reader(comp.fileno(), comp.drain)
        try:
            results = []
            for value in (b"first", b"second"):
                fut = loop.create_future()
                comp.put(s3, "once", value, fut, if_absent=True)
                try:
                    results.append(await fut)
                except Exception as exc:  # noqa: BLE001
                    results.append(exc)
            return results
        finally:
            loop.remove_reader(comp.fileno())

    results = asyncio.run(run())
    assert results == [True, False]  # created, then refused (412 PreconditionFailed)
    assert s3["once"] == b"first"


# ------------------------------------------------------------------ moto: signatures
#
# Stores here sit at the root of a fresh bucket: moto's verifier decodes %2F in the query
# before checking, so it refuses every correctly signed listing with a '/' in its prefix
# (botocore's too). Listings from the bucket root have an empty prefix.

def _auth_store(srv, **extra):
    bucket = f"auth-{_unique()[:20]}"
    srv.client().create_bucket(Bucket=bucket)
    return CloudFilesStore(f"s3://{bucket}", **srv.store_options(**extra))


def test_right_key_works_with_signature_checking(moto_auth):
    s = _auth_store(moto_auth)
    s["a"] = b"signed"
    s.setitems({f"b/{i}": b"x" for i in range(20)})
    assert s["a"] == b"signed"
    assert s.getitems(["a", "b/1", "missing"]) == {"a": b"signed", "b/1": b"x"}
    assert len(s) == 21
    assert s.get_range("a", 1, 3) == b"ig"
    assert "a" in s and "nope" not in s
    del s["a"]
    assert "a" not in s
    s.clear()
    assert list(s) == []


def test_multipart_upload_with_signature_checking(moto_auth):
    """Every request of a parallel multipart upload (initiate, parts, complete) is signed
    the way a checking server accepts; a wrong secret fails at the first and leaves nothing."""
    import os
    opts = dict(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, multipart_concurrency=4)
    s = _auth_store(moto_auth, **opts)
    data = os.urandom(16 * MiB + 7)
    s["big"] = data
    assert s["big"] == data
    bad = CloudFilesStore(s.url, **moto_auth.store_options(secret_access_key="not-the-secret", **opts),
                          retries=2)
    with pytest.raises(errors.AuthenticationError):
        bad["big2"] = data
    assert "big2" not in s
    assert not moto_auth.client().list_multipart_uploads(Bucket=s.url[5:]).get("Uploads")


def test_wrong_secret_is_an_authentication_error(moto_auth):
    good = _auth_store(moto_auth)
    good["a"] = b"x"
    s = CloudFilesStore(good.url, **moto_auth.store_options(secret_access_key="not-the-secret"), retries=2)
    for action in (lambda: s.__setitem__("b", b"x"), lambda: s["a"], lambda: list(s),
                   lambda: s.__delitem__("a")):
        with pytest.raises(errors.AuthenticationError) as ei:
            action()
        msg = str(ei.value)
        assert "SignatureDoesNotMatch" in msg or "HTTP 403" in msg  # a HEAD's 403 has no body
        assert "not-the-secret" not in msg and "not-the-secret" not in repr(s)
        assert ei.value.attempts == 1, "an authentication error is not retried"
    assert good["a"] == b"x" and "b" not in good


def test_unknown_key_id_is_an_authentication_error(moto_auth):
    good = _auth_store(moto_auth)
    s = CloudFilesStore(good.url, **moto_auth.store_options(access_key_id="AKIANOTAREALKEY00000"))
    with pytest.raises(errors.AuthenticationError) as ei:
        s["a"] = b"x"
    assert "InvalidAccessKeyId" in str(ei.value)


def test_session_token_from_an_assumed_role(moto_auth):
    import json

    import botocore.session
    session = botocore.session.get_session()
    kw = dict(region_name=moto_auth.region, endpoint_url=moto_auth.endpoint,
              aws_access_key_id=moto_auth.access_key_id, aws_secret_access_key=moto_auth.secret_access_key)
    iam, sts = session.create_client("iam", **kw), session.create_client("sts", **kw)
    name = f"role-{_unique()[:12]}"
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="s3", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    creds = sts.assume_role(RoleArn=arn, RoleSessionName="cfs-test")["Credentials"]
    assert creds["SessionToken"]
    good = _auth_store(moto_auth)
    temp = dict(endpoint_url=moto_auth.endpoint, access_key_id=creds["AccessKeyId"],
                secret_access_key=creds["SecretAccessKey"])
    s = CloudFilesStore(good.url, **temp, session_token=creds["SessionToken"])
    s["t"] = b"with a token"
    assert s["t"] == b"with a token"
    assert list(s) == ["t"]
    assert creds["SessionToken"] not in repr(s)
    without = CloudFilesStore(good.url, **temp)
    with pytest.raises(errors.AuthenticationError):
        without["t"]


# -------------------------------------------------------- fault server as S3 endpoint

def _fault_store(fault_server, prefix, **extra):
    opts = dict(endpoint_url=fault_server.url, access_key_id=AKID, secret_access_key=SECRET,
                retry_base=0.01, retry_cap=0.05)
    opts.update(extra)
    return CloudFilesStore(f"s3://bkt/{prefix}", **opts)


@pytest.mark.parametrize("repeat", [100, 30_000])  # hashed inline / on a worker thread
def test_put_headers(fault_server, repeat):
    prefix = _unique()
    s = _fault_store(fault_server, prefix, session_token=TOKEN, requester_pays=True)
    body = b"some bytes \x00\xff" * repeat
    s["dir/the key+!"] = body
    path = f"/bkt/{prefix}/dir/the key+!"
    (req,) = fault_server.requests(path, "PUT")
    h = lambda name: fault_server.header(req, name)  # noqa: E731
    assert urllib.parse.unquote(req.raw_path.split("?")[0]) == path
    assert "%20" in req.raw_path and "%2B" in req.raw_path and "%21" in req.raw_path
    assert h("Content-MD5") == base64.b64encode(hashlib.md5(body).digest()).decode()
    assert h("x-amz-checksum-crc32c") == crc32c_b64(body)
    assert h("x-amz-sdk-checksum-algorithm") == "CRC32C"
    assert h("Content-Type") == "application/octet-stream"
    assert h("x-amz-content-sha256") == hashlib.sha256(body).hexdigest()
    assert h("X-Amz-Security-Token") == TOKEN
    assert h("x-amz-request-payer") == "requester"
    assert h("Host") == fault_server.url.split("://")[1]
    auth = h("Authorization")
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={AKID}/")
    assert "/us-east-1/s3/aws4_request" in auth
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert signed == sorted(signed)
    for name in ("content-md5", "content-type", "host", "x-amz-checksum-crc32c", "x-amz-content-sha256",
                 "x-amz-date", "x-amz-request-payer", "x-amz-sdk-checksum-algorithm", "x-amz-security-token"):
        assert name in signed
    assert SECRET not in str(req.headers)
    assert fault_server.get(path) == body


def test_unsigned_payload_option(fault_server):
    prefix = _unique()
    s = _fault_store(fault_server, prefix, sign_payload=False, region="eu-west-3")
    s["k"] = b"data"
    (req,) = fault_server.requests(f"/bkt/{prefix}/k", "PUT")
    assert fault_server.header(req, "x-amz-content-sha256") == "UNSIGNED-PAYLOAD"
    assert "/eu-west-3/s3/aws4_request" in fault_server.header(req, "Authorization")


@pytest.fixture(scope="module")
def nginx_logging_payload_hash():
    """nginx over http and https, logging each request's x-amz-content-sha256 (it stores a
    PUT's body as a file and ignores the signature: what is looked at is the header)."""
    from servers.nginx import NginxServer
    srv = NginxServer(tls=True, access_log=True,
                      access_log_format="$request_method $uri $http_x_amz_content_sha256")
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("scheme, sign_payload, signed", [
    ("https", None, False), ("http", None, True), ("https", True, True), ("http", False, False)])
def test_payload_hash_is_signed_over_http_by_default(nginx_logging_payload_hash, scheme,
                                                      sign_payload, signed):
    """By default (as botocore) the body's SHA-256 is in the signature over http only: over
    https TLS protects the body, Content-MD5 is sent either way, and the SHA-256 pass over
    every uploaded byte is spared. sign_payload says otherwise either way."""
    srv = nginx_logging_payload_hash
    prefix = _unique()
    opts = {} if sign_payload is None else {"sign_payload": sign_payload}
    s = CloudFilesStore(f"s3://bkt/{prefix}", endpoint_url=srv.tls_url if scheme == "https" else srv.url,
                        ca_bundle=srv.ca_file, access_key_id=AKID, secret_access_key=SECRET, **opts)
    body = os.urandom(3000)
    s["k"] = body
    assert s["k"] == body
    with open(srv.access_log_path) as f:
        (row,) = [ln.split() for ln in f if ln.startswith(f"PUT /bkt/{prefix}/k ")]
    assert row[2] == (hashlib.sha256(body).hexdigest() if signed else "UNSIGNED-PAYLOAD")


def test_anonymous_requests_are_unsigned(fault_server):
    prefix = _unique()
    fault_server.put(f"/bkt/{prefix}/k", b"public")
    s = CloudFilesStore(f"s3://bkt/{prefix}", endpoint_url=fault_server.url, anon=True)
    assert s["k"] == b"public"
    (req,) = fault_server.requests(f"/bkt/{prefix}/k", "GET")
    assert fault_server.header(req, "Authorization") is None


def test_corrupted_body_is_retried(fault_server):
    prefix = _unique()
    path = f"/bkt/{prefix}/obj"
    data = bytes(range(256)) * 64
    fault_server.put(path, data)
    fault_server.add_faults(path, ["corrupt"])
    s = _fault_store(fault_server, prefix)
    assert s["obj"] == data
    assert len(fault_server.requests(path, "GET")) == 2


def test_corrupted_every_time_is_a_checksum_error(fault_server):
    prefix = _unique()
    path = f"/bkt/{prefix}/obj"
    fault_server.put(path, b"0123456789" * 100)
    fault_server.add_faults(path, ["corrupt"] * 3)
    s = _fault_store(fault_server, prefix, retries=3)
    with pytest.raises(errors.ChecksumError) as ei:
        s["obj"]
    assert "ETag" in str(ei.value)
    assert len(fault_server.requests(path, "GET")) == 3


def test_etag_check_can_be_turned_off_and_skips_ranges(fault_server):
    prefix = _unique()
    path = f"/bkt/{prefix}/obj"
    fault_server.put(path, b"0123456789" * 100)
    fault_server.add_faults(path, ["corrupt"])
    s = _fault_store(fault_server, prefix, verify_etag=False)
    assert s["obj"] != b"0123456789" * 100  # what the server sent, unchecked
    assert s.get_range("obj", 0, 10) == b"0123456789"


def test_503_is_retried(fault_server):
    prefix = _unique()
    path = f"/bkt/{prefix}/obj"
    fault_server.put(path, b"fine")
    fault_server.add_faults(path, ["503", "503"])
    s = _fault_store(fault_server, prefix)
    assert s["obj"] == b"fine"
    assert len(fault_server.requests(path, "GET")) == 3


def test_delete_of_a_missing_key(fault_server):
    prefix = _unique()
    s = _fault_store(fault_server, prefix)
    with pytest.raises(KeyError):
        del s["nothing"]
    assert fault_server.requests(f"/bkt/{prefix}/nothing", "DELETE") == []
    # batch deletes (DeleteObjects, which ignores missing keys) are tested on moto


# ---------------------------------------------------------- canned S3 error responses

class CannedS3(http.server.ThreadingHTTPServer):
    """Answers each request with the next canned (status, body[, headers]) of its path, else
    200 with the path's default body; records (method, path) of every request (and the
    query and body size in full_log).

    Multipart parts (a partNumber in the query) take their answers from the queue of
    "PATH#partN", else 200 with the MD5 of the body as ETag, after `part_delay` seconds;
    `max_parts_in_flight` is how many parts the server held at once. POST bodies (the
    CompleteMultipartUpload documents) are kept in `posted`."""
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _CannedHandler)
        self.lock = threading.Lock()
        self.queues = {}
        self.defaults = {}
        self.log = []
        self.full_log = []  # (method, path, query, body length)
        self.headers_log = []  # (method, path, query, {lower-case name: value})
        self.posted = []
        self.part_delay = 0.0
        self.parts_in_flight = self.max_parts_in_flight = 0
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def queue(self, path, *responses):
        with self.lock:
            self.queues.setdefault(path, []).extend(responses)

    def count(self, path):
        with self.lock:
            return sum(1 for _, p in self.log if p == path)

    def stop(self):
        self.shutdown()
        self.server_close()


class _CannedHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n) if n else b""
        path, _, query = self.path.partition("?")
        part = urllib.parse.parse_qs(query).get("partNumber")
        srv = self.server
        with srv.lock:
            srv.log.append((self.command, path))
            srv.full_log.append((self.command, path, query, n))
            srv.headers_log.append((self.command, path, query, {k.lower(): v for k, v in self.headers.items()}))
            if self.command == "POST":
                srv.posted.append(data)
            if part:
                srv.parts_in_flight += 1
                srv.max_parts_in_flight = max(srv.max_parts_in_flight, srv.parts_in_flight)
                q = srv.queues.get(f"{path}#part{part[0]}")
                answer = q.pop(0) if q else (200, b"", {"ETag": f'"{hashlib.md5(data).hexdigest()}"'})
            else:
                q = srv.queues.get(path)
                answer = q.pop(0) if q else srv.defaults.get(path, (200, b"ok"))
        if part:
            time.sleep(srv.part_delay)
            with srv.lock:
                srv.parts_in_flight -= 1
        status, body, headers = answer if len(answer) == 3 else (*answer, {})
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/xml")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _answer


def _err(code, message="msg"):
    return f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>' \
           f'<RequestId>1</RequestId></Error>'.encode()


@pytest.fixture
def canned():
    srv = CannedS3()
    yield srv
    srv.stop()


def _canned_store(canned, **extra):
    opts = dict(endpoint_url=canned.url, access_key_id=AKID, secret_access_key=SECRET,
                retry_base=0.01, retry_cap=0.05, retries=4)
    opts.update(extra)
    return CloudFilesStore("s3://bkt/root", **opts)


@pytest.mark.parametrize("status,code", [(503, "SlowDown"), (500, "InternalError"),
                                         (400, "RequestTimeout"), (503, "ServiceUnavailable")])
def test_transient_s3_errors_are_retried(canned, status, code):
    canned.queue("/bkt/root/k", (status, _err(code)), (status, _err(code)))
    assert _canned_store(canned)["k"] == b"ok"
    assert canned.count("/bkt/root/k") == 3


def test_transient_s3_error_outlasting_retries(canned):
    canned.queue("/bkt/root/k", *[(503, _err("SlowDown", "Please reduce your request rate."))] * 4)
    with pytest.raises(errors.TransientError) as ei:
        _canned_store(canned)["k"]
    assert "SlowDown" in str(ei.value) and "reduce your request rate" in str(ei.value)
    assert ei.value.attempts == 4


@pytest.mark.parametrize("status,code,exc", [
    (403, "AccessDenied", errors.AuthenticationError),
    (403, "SignatureDoesNotMatch", errors.AuthenticationError),
    (400, "ExpiredToken", errors.AuthenticationError),
    (400, "AuthorizationHeaderMalformed", errors.AuthenticationError),
    (404, "NoSuchBucket", errors.BucketNotFoundError),
    (400, "InvalidArgument", errors.RequestError),
])
def test_s3_error_codes(canned, status, code, exc):
    canned.queue("/bkt/root/k", (status, _err(code, "the details")))
    with pytest.raises(exc) as ei:
        _canned_store(canned)["k"]
    assert code in str(ei.value) and "the details" in str(ei.value)
    assert canned.count("/bkt/root/k") == 1


def test_no_such_key_is_a_key_error(canned):
    canned.queue("/bkt/root/k", (404, _err("NoSuchKey")))
    with pytest.raises(KeyError):
        _canned_store(canned)["k"]


def test_malformed_listing_is_a_protocol_error(canned):
    canned.defaults["/bkt"] = (200, b"<ListBucketResult><Contents><Key>root/a</Key>")
    with pytest.raises(errors.ProtocolError):
        list(_canned_store(canned))
    canned.defaults["/bkt"] = (200, b"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>")
    with pytest.raises(errors.ProtocolError):
        list(_canned_store(canned))
    canned.defaults["/bkt"] = (200, b"<html>not s3</html>")
    with pytest.raises(errors.ProtocolError):
        list(_canned_store(canned))


def test_listing_pages_follow_continuation_tokens(canned):
    page1 = (b"<ListBucketResult><IsTruncated>true</IsTruncated>"
             b"<Contents><Key>root/a</Key><Size>1</Size></Contents>"
             b"<Contents><Key>other/x</Key><Size>1</Size></Contents>"
             b"<NextContinuationToken>tok/+=1</NextContinuationToken></ListBucketResult>")
    page2 = (b"<ListBucketResult><IsTruncated>false</IsTruncated><EncodingType>url</EncodingType>"
             b"<Contents><Key>root/b%20c%2Bd</Key><Size>2</Size></Contents>"
             b"<Contents><Key>root/dir/</Key><Size>0</Size></Contents></ListBucketResult>")
    canned.queue("/bkt", (200, page1), (503, _err("SlowDown")), (200, page2))
    assert sorted(_canned_store(canned).keys()) == ["a", "b c+d"]
    assert canned.count("/bkt") == 3


# -------------------------------------------------------------------------- options

def test_option_errors(monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    ep = {"endpoint_url": "http://127.0.0.1:9"}
    keys = {"access_key_id": AKID, "secret_access_key": SECRET}
    bad = [
        ("s3://bkt/x", ep),                                           # no credentials
        ("s3://bkt/x", {**ep, "access_key_id": AKID}),                # half a key
        ("s3://bkt/x", {"endpoint_url": "ftp://h", **keys}),
        ("s3://bkt/x", {"endpoint_url": "http://h/some/path", **keys}),
        ("s3://bkt/x", {"endpoint_url": "http://user@h", **keys}),
        ("s3://bkt/x", {**ep, **keys, "addressing_style": "sideways"}),
        ("s3://bkt/x", {**ep, **keys, "region": "us east"}),
        ("s3://bkt/x", {**ep, **keys, "anon": "maybe"}),
        ("s3://b!d/x", {**ep, **keys}),
        ("s3:///x", {**ep, **keys}),
        ("s3://bkt/a/../b", {**ep, **keys}),
        ("s3://bkt/x", {**ep, **keys, "no_such_option": 1}),
        ("s3://bkt/x", {**ep, **keys, "multipart_concurrency": 0}),
        ("s3://bkt/x", {**ep, **keys, "multipart_chunksize": 1024}),
        ("s3://bkt/x", {**ep, **keys, "checksum_algorithm": "md5"}),
        ("s3://bkt/x", {**ep, **keys, "checksum_algorithm": True}),
        ("s3://bkt/x", {**ep, **keys, "verify_checksum": "maybe"}),
    ]
    for url, opts in bad:
        with pytest.raises(errors.OptionError) as ei:
            CloudFilesStore(url, **opts)
        assert SECRET not in str(ei.value)


def test_url_forms(fault_server):
    for url, want in [("s3://bkt", "s3://bkt"), ("s3://bkt/", "s3://bkt"), ("s3://bkt/a/b/", "s3://bkt/a/b"),
                      ("s3://bkt//a", "s3://bkt/a")]:
        s = CloudFilesStore(url, endpoint_url=fault_server.url, anon=True)
        assert want in repr(s) or s.url == url


def test_bucket_root_store(fault_server):
    fault_server.put("/rootbkt/k", b"at the top")
    s = CloudFilesStore("s3://rootbkt", endpoint_url=fault_server.url, anon=True)
    assert s["k"] == b"at the top"


def test_many_parallel_gets_and_puts(s3):
    values = {f"p/{i}": (str(i) * 100).encode() for i in range(500)}
    t = time.monotonic()
    s3.setitems(values)
    assert s3.getitems(list(values)) == values
    assert time.monotonic() - t < 120


# ------------------------------------------------------------------ multipart upload

MiB = 1024 * 1024


def test_multipart_upload(s3, moto_server):
    import os
    big = CloudFilesStore(s3.url, **moto_server.store_options(multipart_threshold=5 * MiB,
                                                               multipart_chunksize=5 * MiB))
    data = os.urandom(12 * MiB + 123)
    big["big"] = data
    big.setitems({"b1": data[:6 * MiB], "small": b"one request"})
    assert big["big"] == data and s3["b1"] == data[:6 * MiB] and s3["small"] == b"one request"
    c = moto_server.client()
    root = s3.url.split("/", 3)[3]
    assert c.head_object(Bucket=moto_server.bucket, Key=f"{root}/big")["ETag"].endswith('-3"')
    assert c.head_object(Bucket=moto_server.bucket, Key=f"{root}/b1")["ETag"].endswith('-2"')
    assert c.head_object(Bucket=moto_server.bucket, Key=f"{root}/small")["ETag"].count("-") == 0
    assert not c.list_multipart_uploads(Bucket=moto_server.bucket).get("Uploads")


_INIT = (200, b'<InitiateMultipartUploadResult><Bucket>bkt</Bucket><Key>root/big</Key>'
              b'<UploadId>up/id+1</UploadId></InitiateMultipartUploadResult>')
_COMPLETE = (200, b'<CompleteMultipartUploadResult><ETag>"x-2"</ETag></CompleteMultipartUploadResult>')
_UPLOAD_Q = "uploadId=up%2Fid%2B1"


def _calls(canned):
    """(method, partNumber or the first query item, body size) of each request to the object."""
    out = []
    for m, p, q, n in canned.full_log:
        if p == "/bkt/root/big":
            qs = urllib.parse.parse_qs(q, keep_blank_values=True)
            out.append((m, f"part{qs['partNumber'][0]}" if "partNumber" in qs else q.split("&")[0], n))
    return out


def _completed_parts(document):
    """[(PartNumber, ETag)] of a CompleteMultipartUpload document."""
    import xml.etree.ElementTree as ET
    root = ET.fromstring(document)
    ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    return [(int(p.find(f"{ns}PartNumber").text), p.find(f"{ns}ETag").text.strip('"'))
            for p in root.iter(f"{ns}Part")]


def test_multipart_parts_go_in_parallel(canned):
    """Parts go up multipart_concurrency at once, each the right slice, and the completion
    lists every part's own ETag in order."""
    import os
    canned.queue("/bkt/root/big", _INIT, _COMPLETE)
    canned.part_delay = 0.3
    data = os.urandom(30 * MiB + 1)
    s = _canned_store(canned, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB,
                      multipart_concurrency=3)
    s["big"] = data
    assert canned.max_parts_in_flight == 3
    calls = _calls(canned)
    assert calls[0][:2] == ("POST", "uploads=") and calls[-1][:2] == ("POST", _UPLOAD_Q)
    assert sorted(c for c in calls[1:-1]) == sorted(
        ("PUT", f"part{i}", 5 * MiB if i < 7 else 1) for i in range(1, 8))
    slices = [data[i * 5 * MiB:(i + 1) * 5 * MiB] for i in range(7)]
    assert _completed_parts(canned.posted[-1]) == [
        (i + 1, hashlib.md5(part).hexdigest()) for i, part in enumerate(slices)]


def test_multipart_retries_a_part_and_completes(canned):
    s = _canned_store(canned, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, retries=2)
    canned.queue("/bkt/root/big", _INIT, _COMPLETE)
    canned.queue("/bkt/root/big#part2", (503, _err("SlowDown")))
    s["big"] = b"x" * (6 * MiB)
    calls = _calls(canned)
    assert calls[0][:2] == ("POST", "uploads=") and calls[-1][:2] == ("POST", _UPLOAD_Q)
    assert sorted(calls[1:-1]) == [("PUT", "part1", 5 * MiB), ("PUT", "part2", MiB), ("PUT", "part2", MiB)]
    assert all(_UPLOAD_Q in q for m, p, q, _ in canned.full_log[1:])
    assert [n for n, _ in _completed_parts(canned.posted[-1])] == [1, 2]


def test_multipart_failure_aborts_the_upload(canned):
    """A part that fails for good: the parts already going finish, none starts after it,
    the upload is aborted, and the error names the part and its URL."""
    s = _canned_store(canned, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB,
                      multipart_concurrency=1)
    canned.queue("/bkt/root/big", _INIT, (204, b""))
    canned.queue("/bkt/root/big#part2", (400, _err("InvalidPart", "bad part")))
    with pytest.raises(errors.RequestError) as ei:
        s["big"] = b"x" * (11 * MiB)
    assert "InvalidPart" in str(ei.value) and "part 2 of 3" in str(ei.value)
    assert "partNumber=2" in ei.value.url and ei.value.status == 400
    assert [c[:2] for c in _calls(canned)] == [
        ("POST", "uploads="), ("PUT", "part1"), ("PUT", "part2"), ("DELETE", _UPLOAD_Q)]


def test_interrupted_multipart_upload_is_aborted(canned):
    """A signal (Ctrl-C) during the parts: the part on the wire is given up, no other part
    starts, and the upload is aborted rather than left half done on the server."""
    from test_interrupt import Interrupted, interrupt_after
    s = _canned_store(canned, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB,
                      multipart_concurrency=1, stall_timeout=120)
    canned.queue("/bkt/root/big", _INIT, (204, b""))
    canned.part_delay = 5
    t0 = time.monotonic()
    with interrupt_after(0.5), pytest.raises(Interrupted):
        s["big"] = b"x" * (11 * MiB)
    assert time.monotonic() - t0 < 4
    assert [c[:2] for c in _calls(canned)] == [
        ("POST", "uploads="), ("PUT", "part1"), ("DELETE", _UPLOAD_Q)]


def test_multipart_failure_in_parallel_waits_for_the_parts_in_flight(canned):
    s = _canned_store(canned, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    canned.queue("/bkt/root/big", _INIT, (204, b""))
    canned.queue("/bkt/root/big#part1", (403, _err("AccessDenied", "no")))
    canned.part_delay = 0.2
    with pytest.raises(errors.AuthenticationError) as ei:
        s["big"] = b"x" * (11 * MiB)
    assert "AccessDenied" in str(ei.value) and "part 1 of 3" in str(ei.value)
    calls = _calls(canned)
    assert calls[-1][:2] == ("DELETE", _UPLOAD_Q) and "POST" not in [m for m, *_ in calls[1:]]
    assert sorted(c[1] for c in calls[1:-1]) == ["part1", "part2", "part3"]
    assert canned.parts_in_flight == 0  # every part was answered before the abort went


def test_multipart_complete_with_an_error_in_a_200(canned):
    s = _canned_store(canned, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    canned.queue("/bkt/root/big", _INIT, (200, _err("InternalError", "try again")), _COMPLETE)
    s["big"] = b"x" * (6 * MiB)
    calls = [m for m, p, _, _ in canned.full_log if p == "/bkt/root/big"]
    assert calls == ["POST", "PUT", "PUT", "POST", "POST"]


def test_multipart_transient_failures_outlasting_retries_abort(canned):
    s = _canned_store(canned, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, retries=2)
    canned.queue("/bkt/root/big", _INIT, (204, b""))
    canned.queue("/bkt/root/big#part1", (500, _err("InternalError")), (500, _err("InternalError")))
    with pytest.raises(errors.TransientError) as ei:
        s["big"] = b"x" * (6 * MiB)
    assert ei.value.attempts == 2
    calls = _calls(canned)
    assert calls[0][:2] == ("POST", "uploads=") and calls[-1][:2] == ("DELETE", _UPLOAD_Q)
    assert sorted(c[1] for c in calls[1:-1]) == ["part1", "part1", "part2"]


def test_credentials_found_in_the_environment_sign_requests(moto_auth, monkeypatch, tmp_path):
    """A store given no credentials finds them the AWS way (here the environment and a
    profile file) and signs with them; they stay out of its repr and its pickle."""
    bucket = f"auth-{_unique()[:20]}"
    moto_auth.client().create_bucket(Bucket=bucket)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_auth.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_auth.secret_access_key)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_auth.endpoint)
    monkeypatch.setenv("AWS_REGION", moto_auth.region)
    s = CloudFilesStore(f"s3://{bucket}")
    s["k"] = b"from the environment"
    assert s["k"] == b"from the environment"
    assert moto_auth.secret_access_key not in repr(s)
    blob = pickle.dumps(s)
    assert moto_auth.secret_access_key.encode() not in blob
    assert pickle.loads(blob)["k"] == b"from the environment"  # rediscovered on load

    # a profile file instead of the environment
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    creds = tmp_path / "credentials"
    creds.write_text(f"[bench]\naws_access_key_id = {moto_auth.access_key_id}\n"
                     f"aws_secret_access_key = {moto_auth.secret_access_key}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent-config"))
    assert CloudFilesStore(f"s3://{bucket}", profile="bench")["k"] == b"from the environment"
    # and a wrong one is refused, not silently anonymous
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_auth.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(errors.AuthenticationError):
        CloudFilesStore(f"s3://{bucket}", retries=1)["k"]


def test_delitems_rmdir_clear_use_delete_objects(s3):
    keys = [f"d/{i:04d}" for i in range(2500)]
    s3.setitems({k: b"x" for k in keys})
    s3["keep"] = b"kept"
    before = engine_stats()["requests"]
    s3.delitems(keys[:2100] + ["d/missing"])  # a missing key is not a failure
    used = engine_stats()["requests"] - before
    assert used == 3, f"2,101 keys in {used} requests: DeleteObjects takes 1,000 at a time"
    assert sorted(s3) == sorted(keys[2100:] + ["keep"])
    before = engine_stats()["requests"]
    s3.rmdir("d")
    assert engine_stats()["requests"] - before <= 2  # one listing page, one DeleteObjects
    assert list(s3) == ["keep"]
    s3.clear()
    assert list(s3) == []


def test_delitems_stops_at_a_bad_key_and_keeps_what_came_before(s3):
    s3.setitems({f"b/{i}": b"x" for i in range(5)})
    with pytest.raises(errors.InvalidKeyError):
        s3.delitems(["b/0", "b/1", "../escape", "b/2"])
    assert sorted(s3) == ["b/2", "b/3", "b/4"]


# ------------------------------------------------------- S3 additional checksums (moto)

def _checksum_headers(srv, key, **kwargs):
    """The x-amz-checksum-* headers a GET (or HEAD) of key answers, asking for them."""
    c = srv.client()
    r = (c.head_object if kwargs.pop("head", False) else c.get_object)(
        Bucket=srv.bucket, Key=key, ChecksumMode="ENABLED", **kwargs)
    return {k: v for k, v in r["ResponseMetadata"]["HTTPHeaders"].items()
            if k in ("x-amz-checksum-crc32c", "x-amz-checksum-type")}


def _put_with_checksum(srv, key, body, checksum):
    """PutObject through botocore with x-amz-checksum-crc32c: checksum (and
    x-amz-sdk-checksum-algorithm, as SDKs send it)."""
    return srv.client().put_object(Bucket=srv.bucket, Key=key, Body=body, ChecksumAlgorithm="CRC32C",
                                   ChecksumCRC32C=checksum)


def test_moto_keeps_and_returns_a_put_checksum(moto_server):
    """moto keeps a PUT's x-amz-checksum-crc32c and gives it back on GET and HEAD with
    x-amz-checksum-mode: ENABLED only, and never on a range (as AWS)."""
    key, body = f"{_unique()}/k", os.urandom(1000)
    _put_with_checksum(moto_server, key, body, crc32c_b64(body))
    assert _checksum_headers(moto_server, key)["x-amz-checksum-crc32c"] == crc32c_b64(body)
    assert _checksum_headers(moto_server, key, head=True)["x-amz-checksum-crc32c"] == crc32c_b64(body)
    assert _checksum_headers(moto_server, key, Range="bytes=0-9") == {}
    plain = moto_server.client().get_object(Bucket=moto_server.bucket, Key=key)
    assert "x-amz-checksum-crc32c" not in plain["ResponseMetadata"]["HTTPHeaders"]


@pytest.mark.xfail(strict=True, reason="moto stores a PUT's x-amz-checksum-crc32c as sent, unchecked; "
                                      "AWS answers BadDigest")
def test_moto_refuses_a_wrong_put_checksum(moto_server):
    import botocore.exceptions
    with pytest.raises(botocore.exceptions.ClientError, match="BadDigest"):
        _put_with_checksum(moto_server, f"{_unique()}/k", b"the body", crc32c_b64(b"another body"))


@pytest.mark.xfail(strict=True, reason="moto checks neither a part's x-amz-checksum-crc32c nor the whole "
                                      "object's at CompleteMultipartUpload; AWS answers BadDigest")
def test_moto_refuses_a_wrong_multipart_checksum(moto_server):
    import botocore.exceptions
    c, key = moto_server.client(), f"{_unique()}/k"
    up = c.create_multipart_upload(Bucket=moto_server.bucket, Key=key, ChecksumAlgorithm="CRC32C",
                                   ChecksumType="FULL_OBJECT")["UploadId"]
    part = c.upload_part(Bucket=moto_server.bucket, Key=key, UploadId=up, PartNumber=1, Body=b"part",
                         ChecksumCRC32C=crc32c_b64(b"part"))
    with pytest.raises(botocore.exceptions.ClientError, match="BadDigest"):
        c.complete_multipart_upload(
            Bucket=moto_server.bucket, Key=key, UploadId=up, ChecksumType="FULL_OBJECT",
            ChecksumCRC32C=crc32c_b64(b"not the part"),
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"],
                                        "ChecksumCRC32C": crc32c_b64(b"part")}]})


def check_uploads_carry_crc32c(srv, url):
    """A single PUT and a multipart upload (3 parts) through a store at url on srv: the
    object's checksum is the CRC32C of its bytes, FULL_OBJECT for the multipart one; both
    read back (checked against it)."""
    big = CloudFilesStore(url, **srv.store_options(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
    small, data = os.urandom(1000), os.urandom(11 * MiB + 5)
    big.setitems({"small": small, "big": data})
    assert _checksum_headers(srv, f"{_root(big)}/small")["x-amz-checksum-crc32c"] == crc32c_b64(small)
    assert _checksum_headers(srv, f"{_root(big)}/big") == {
        "x-amz-checksum-crc32c": crc32c_b64(data), "x-amz-checksum-type": "FULL_OBJECT"}
    assert big.getitems(["small", "big"]) == {"small": small, "big": data}


def test_our_uploads_carry_crc32c_checksums(s3, moto_server):
    """moto computes a FULL_OBJECT checksum itself (it checks none it is sent): the parts'
    and the whole's as we send them are checked on the canned server below and by
    SeaweedFS (tests/test_seaweedfs.py)."""
    check_uploads_carry_crc32c(moto_server, s3.url)


def test_a_body_that_does_not_match_its_checksum_is_a_checksum_error(s3, moto_server):
    """moto keeps a wrong checksum (it does not check it, test above): the body then never
    matches, whatever the ETag (a right MD5 here). Retried, then a ChecksumError naming the
    key, the URL and both checksums; a range of it is not checked (S3 has no checksum of a
    range); without verify_checksum the MD5 ETag is checked, and holds."""
    body = b"0123456789" * 100
    _put_with_checksum(moto_server, f"{_root(s3)}/bad", body, crc32c_b64(b"something else"))
    s = CloudFilesStore(s3.url, **moto_server.store_options(retries=2, retry_base=0.01))
    with pytest.raises(errors.ChecksumError) as ei:
        s["bad"]
    msg = str(ei.value)
    assert "bad" in msg and ei.value.url.endswith(f"{_root(s3)}/bad") and ei.value.url in msg
    assert crc32c_b64(body) in msg and crc32c_b64(b"something else") in msg and "CRC32C" in msg
    assert ei.value.attempts == 2
    assert s.get_range("bad", 0, 10) == body[:10]
    unchecked = CloudFilesStore(s3.url, **moto_server.store_options(verify_checksum=False))
    assert unchecked["bad"] == body


def test_checksum_is_checked_rather_than_the_md5(fault_server):
    """An object with an x-amz-checksum-crc32c and an MD5 ETag: the checksum is what a
    corrupted body fails (one hash, not two); a COMPOSITE checksum ("xxx-N") cannot be
    checked against a body and is skipped (the MD5 ETag then catches the corruption)."""
    prefix = _unique()
    data = bytes(range(256)) * 64
    full, composite = f"/bkt/{prefix}/full", f"/bkt/{prefix}/composite"
    fault_server.put(full, data, headers=[("x-amz-checksum-crc32c", crc32c_b64(data))])
    fault_server.put(composite, data, headers=[("x-amz-checksum-crc32c", "AAAAAA==-2"),
                                               ("x-amz-checksum-type", "COMPOSITE")])
    s = _fault_store(fault_server, prefix, retries=2)
    assert s["full"] == data and s["composite"] == data  # a skipped checksum is no error
    (req,) = fault_server.requests(full, "GET")
    assert fault_server.header(req, "x-amz-checksum-mode") == "ENABLED"
    assert "x-amz-checksum-mode" in fault_server.header(req, "Authorization")  # signed
    fault_server.add_faults(full, ["corrupt", "corrupt"])
    with pytest.raises(errors.ChecksumError, match="x-amz-checksum-crc32c"):
        s["full"]
    fault_server.add_faults(composite, ["corrupt", "corrupt"])
    with pytest.raises(errors.ChecksumError, match="ETag"):
        s["composite"]
    fault_server.add_faults(full, ["corrupt"])
    assert s["full"] == data  # once: retried
    assert len(fault_server.requests(full, "GET")) == 5


def test_a_multipart_etag_with_a_full_object_checksum_is_checked(fault_server):
    """The gap a multipart ETag ("md5-N") left: with a FULL_OBJECT checksum its body is
    checked. The fault server always sends an MD5 ETag, so verify_etag=False stands for an
    ETag that is no MD5."""
    prefix = _unique()
    data = os.urandom(100_000)
    path = f"/bkt/{prefix}/mpu"
    fault_server.put(path, data, headers=[("x-amz-checksum-crc32c", crc32c_b64(data)),
                                          ("x-amz-checksum-type", "FULL_OBJECT")])
    fault_server.add_faults(path, ["corrupt"] * 3)
    s = _fault_store(fault_server, prefix, retries=3, verify_etag=False)
    with pytest.raises(errors.ChecksumError):
        s["mpu"]
    assert len(fault_server.requests(path, "GET")) == 3
    fault_server.add_faults(path, ["corrupt"])
    assert s["mpu"] == data


def test_ranges_are_not_checked(fault_server):
    """A ranged GET asks for no checksum and checks none, even where one comes back (the
    fault server sends an object's headers with its ranges too): S3 keeps no checksum of a
    range. A corrupted range arrives as sent."""
    prefix = _unique()
    data = b"0123456789" * 100
    path = f"/bkt/{prefix}/obj"
    fault_server.put(path, data, headers=[("x-amz-checksum-crc32c", crc32c_b64(data))])
    s = _fault_store(fault_server, prefix)
    assert s.get_range("obj", 10, 20) == data[10:20]
    (req,) = fault_server.requests(path, "GET")
    assert fault_server.header(req, "x-amz-checksum-mode") is None
    fault_server.add_faults(path, ["corrupt"])
    assert s.get_range("obj", 0, 10) != data[:10]


def test_checksums_can_be_turned_off(fault_server, canned):
    """checksum_algorithm="none" (or False): no x-amz-checksum-* on PUTs, parts or the
    multipart steps; verify_checksum=False: GETs do not ask for one."""
    prefix = _unique()
    for off in ("none", False, "NONE"):
        s = _fault_store(fault_server, prefix, checksum_algorithm=off, verify_checksum=False)
        s["k"] = b"data"
        assert s["k"] == b"data"
    for req in fault_server.requests(f"/bkt/{prefix}/k"):
        assert not [k for k, _ in req.headers if k.lower().startswith("x-amz-checksum")
                    or k.lower() == "x-amz-sdk-checksum-algorithm"]
    canned.queue("/bkt/root/big", _INIT, _COMPLETE)
    _canned_store(canned, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB,
                  checksum_algorithm="none")["big"] = b"x" * (6 * MiB)
    for _, _, _, h in canned.headers_log:
        assert not [k for k in h if "checksum" in k]
    assert b"Checksum" not in canned.posted[-1]


def test_multipart_checksums_sent(canned):
    """CreateMultipartUpload asks for FULL_OBJECT CRC32C; each part carries its CRC32C; the
    completion lists them and carries the whole object's (combined from the parts')."""
    import xml.etree.ElementTree as ET
    canned.queue("/bkt/root/big", _INIT, _COMPLETE)
    data = os.urandom(11 * MiB + 7)
    _canned_store(canned, multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)["big"] = data
    slices = [data[i:i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
    log = [(m, q, h) for m, p, q, h in canned.headers_log if p == "/bkt/root/big"]
    create, complete = log[0], log[-1]
    assert create[1] == "uploads=" and create[2]["x-amz-checksum-algorithm"] == "CRC32C"
    assert create[2]["x-amz-checksum-type"] == "FULL_OBJECT"
    parts = {urllib.parse.parse_qs(q)["partNumber"][0]: h for m, q, h in log[1:-1]}
    assert {n: h["x-amz-checksum-crc32c"] for n, h in parts.items()} == {
        str(i + 1): crc32c_b64(p) for i, p in enumerate(slices)}
    assert all(h["x-amz-sdk-checksum-algorithm"] == "CRC32C" for h in parts.values())
    assert complete[2]["x-amz-checksum-crc32c"] == crc32c_b64(data)
    assert complete[2]["x-amz-checksum-type"] == "FULL_OBJECT"
    signed = complete[2]["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert "x-amz-checksum-crc32c" in signed and "x-amz-checksum-type" in signed
    root = ET.fromstring(canned.posted[-1])
    ns = root.tag[:root.tag.index("}") + 1]
    assert [p.find(f"{ns}ChecksumCRC32C").text for p in root.iter(f"{ns}Part")] == [
        crc32c_b64(p) for p in slices]
