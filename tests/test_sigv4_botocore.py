"""Cross-check the C SigV4 signer against botocore's for S3 requests.

botocore builds and signs real S3 requests (its serializer encodes the key, its S3 signer
signs); a `before-send` hook captures each request and stops it before any network I/O.
The C signer (through the test-only program tests/c/backends/s3/sigv4_cli.c) signs the same request
from the raw key, and must produce the same path, query and Authorization header.
"""
import base64
import calendar
import hashlib
import json
import subprocess
import time
import urllib.parse

import pytest

import cbuild

botocore = pytest.importorskip("botocore")  # a test dependency (pyproject [test])
import botocore.config  # noqa: E402, F811
import botocore.session  # noqa: E402

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE//+token=="

KEYS = [
    "plain.txt",
    "with space",
    "dir/sub dir/file name",
    "a+b",
    "bang!",
    "co:lon",
    "st*r",
    "per%cent",
    "per%20cent",
    "til~de",
    "caf\u00e9/\u00fcber",
    "\u65e5\u672c\u8a9e/\u30ad\u30fc",
    "emoji-\U0001f600",
    "quote'(paren)",
    "semi;comma,eq=amp&q?hash#",
    "a//double/./dot/../x",
    "[brackets]{braces}@at$dollar",
    "zarr/0.0.1",
    "-_.~all-unreserved",
    "tab\there",
]


class Captured(Exception):
    def __init__(self, request):
        self.request = request


def _capture(request, **kwargs):
    raise Captured(request)


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    """A running sigv4_cli (sanitizers on): sign(dict) -> dict."""
    exe = cbuild.build("backends/s3/sigv4_cli.c", tmp_path_factory.mktemp("sigv4cli"), "asan-ubsan")
    proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, encoding="utf-8",
                            env=cbuild.sanitizer_env())

    def sign(req):
        proc.stdin.write(json.dumps(req) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        assert line, f"sigv4_cli died: {proc.stderr.read()}"
        return json.loads(line)

    yield sign
    proc.stdin.close()
    rc = proc.wait(timeout=30)
    err = proc.stderr.read()
    assert rc == 0, err
    assert cbuild.sanitizer_report(err) is None, err


def make_client(region="us-east-1", token=None, endpoint="http://127.0.0.1:9"):
    session = botocore.session.get_session()
    cfg = botocore.config.Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"max_attempts": 1, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    client = session.create_client("s3", region_name=region, endpoint_url=endpoint,
                                   aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                                   aws_session_token=token, config=cfg)
    client.meta.events.register("before-send.s3", _capture)
    return client


def captured(call, **kwargs):
    with pytest.raises(Captured) as exc:
        call(**kwargs)
    return exc.value.request


def c_sign_like(request, signer, raw_path, region, token=None, path_mode="s3"):
    """Sign with the C signer what botocore signed, from the raw (decoded) path."""
    url = urllib.parse.urlsplit(request.url)
    auth = request.headers["Authorization"]
    auth = auth.decode() if isinstance(auth, bytes) else auth
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    own = {"x-amz-date", "x-amz-security-token", "x-amz-content-sha256"}
    headers = []
    for name in signed:
        if name in own:
            continue
        if name == "host":
            value = request.headers.get("Host") or url.netloc
        else:
            value = request.headers[name]
        headers.append([name, value.decode() if isinstance(value, bytes) else value])
    amz_date = request.headers["X-Amz-Date"]
    amz_date = amz_date.decode() if isinstance(amz_date, bytes) else amz_date
    payload = request.headers["X-Amz-Content-SHA256"]
    payload = payload.decode() if isinstance(payload, bytes) else payload
    query = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
    out = signer({
        "method": request.method,
        "path": raw_path,
        "path_mode": path_mode,
        "query": [list(p) for p in query],
        "headers": headers,
        "payload_hash": payload,
        "content_sha256_header": True,
        "time": calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ")),
        "region": region,
        "service": "s3",
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "session_token": token,
    })
    assert "error" not in out, out
    return out, auth, url


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("method", ["get_object", "head_object", "delete_object"])
def test_object_requests_match_botocore(signer, key, method):
    client = make_client()
    kwargs = {"Bucket": "bucket", "Key": key}
    if method == "get_object":
        kwargs["Range"] = "bytes=0-99"
    req = captured(getattr(client, method), **kwargs)
    out, auth, url = c_sign_like(req, signer, "/bucket/" + key, "us-east-1")
    assert out["canonical_path"] == url.path, (key, out["canonical_path"], url.path)
    assert out["authorization"] == auth, out["canonical_request"]


@pytest.mark.parametrize("key", KEYS)
def test_put_with_md5_and_token_matches_botocore(signer, key):
    body = ("payload for " + key).encode()
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    client = make_client(region="eu-west-1", token=TOKEN)
    req = captured(client.put_object, Bucket="my-bucket", Key=key, Body=body, ContentMD5=md5,
                   ContentType="application/octet-stream")
    assert req.headers["X-Amz-Content-SHA256"] == hashlib.sha256(body).hexdigest().encode()
    out, auth, url = c_sign_like(req, signer, "/my-bucket/" + key, "eu-west-1", token=TOKEN)
    assert out["canonical_path"] == url.path
    assert out["authorization"] == auth, out["canonical_request"]
    assert f"X-Amz-Security-Token: {TOKEN}" in out["extra_headers"]


@pytest.mark.parametrize("prefix", ["", "dir/", "sub dir/+!:*%~\u00e9/", "a&b=c?d/"])
def test_list_objects_v2_matches_botocore(signer, prefix):
    client = make_client()
    req = captured(client.list_objects_v2, Bucket="bucket", Prefix=prefix, Delimiter="/",
                   ContinuationToken="1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=+&x",
                   MaxKeys=1000)
    out, auth, url = c_sign_like(req, signer, "/bucket", "us-east-1")
    assert out["authorization"] == auth, out["canonical_request"]
    # The query the C side would put in its URL decodes to the same parameters.
    assert sorted(urllib.parse.parse_qsl(out["canonical_query"], keep_blank_values=True)) == \
        sorted(urllib.parse.parse_qsl(url.query, keep_blank_values=True))


def test_virtual_hosted_style_matches_botocore(signer):
    session = botocore.session.get_session()
    client = session.create_client(
        "s3", region_name="us-west-2", aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        config=botocore.config.Config(s3={"addressing_style": "virtual"},
                                      request_checksum_calculation="when_required"))
    client.meta.events.register("before-send.s3", _capture)
    key = "some dir/k+ey!"
    req = captured(client.get_object, Bucket="mybucket", Key=key)
    url = urllib.parse.urlsplit(req.url)
    assert url.netloc == "mybucket.s3.us-west-2.amazonaws.com"
    out, auth, url = c_sign_like(req, signer, "/" + key, "us-west-2")
    assert out["canonical_path"] == url.path
    assert out["authorization"] == auth, out["canonical_request"]


def test_presigned_url_matches_botocore(signer):
    client = make_client()
    key = "dir/a b+c"
    url = client.generate_presigned_url("get_object", Params={"Bucket": "bucket", "Key": key},
                                        ExpiresIn=900)
    parts = urllib.parse.urlsplit(url)
    q = dict(urllib.parse.parse_qsl(parts.query))
    out = signer({
        "method": "GET", "path": "/bucket/" + key, "path_mode": "s3", "query": [],
        "headers": [["host", parts.netloc]], "payload_hash": "UNSIGNED-PAYLOAD",
        "time": calendar.timegm(time.strptime(q["X-Amz-Date"], "%Y%m%dT%H%M%SZ")),
        "region": "us-east-1", "service": "s3", "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY, "expires": 900,
    })
    assert "error" not in out, out
    assert out["canonical_path"] == parts.path
    assert out["signature"] == q["X-Amz-Signature"], out["canonical_request"]
    assert dict(urllib.parse.parse_qsl(out["presigned_query"])) == q
