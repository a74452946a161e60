"""moto's S3 server on 127.0.0.1, in its own process, for tests and benchmarks.

    srv = MotoServer().start()                 # signature checking off
    srv.endpoint                               # http://127.0.0.1:PORT
    srv.bucket                                 # a bucket made at start
    srv.store_options()                        # options for CloudFilesStore("s3://...")
    srv.client()                               # a botocore S3 client for checks
    srv.stop()

    auth = MotoServer(auth=True).start()       # signatures and IAM checked
    auth.access_key_id, auth.secret_access_key # an IAM user's key, allowed s3:*, sts:* and iam:*

With `auth=True`, moto is started with INITIAL_NO_AUTH_ACTION_COUNT so that only the
requests that create an IAM user, its access key and its policy go unauthenticated; every
request after that must be signed by a key moto knows. moto's own verifier rejects some
valid signatures for keys with `+ ! : *` or non-ASCII: SigV4 correctness is proven by the
vectors and botocore (tests/test_sigv4_botocore.py), auth tests use plain keys.

A separate process, not ThreadedMotoServer: the server then holds no GIL of the tests
(the GIL and fork tests measure this process), and INITIAL_NO_AUTH_ACTION_COUNT, which moto
reads at import, differs per server.

    proxy = CorruptingProxy(srv.endpoint).start()   # in front of any S3 server
    proxy.corrupt("/bucket/key", times=2)           # the next 2 GETs: a byte flipped
    proxy.stop()

S3's additional checksums (x-amz-checksum-*), as moto 5.2 and SeaweedFS 4.48 (tests/
seaweedfs.py) handle them next to what AWS S3 documents. tests/test_s3.py and
tests/test_seaweedfs.py check each line (a departure from AWS is an xfail(strict=True)):

| what                                             | AWS S3         | moto 5.2          | SeaweedFS 4.48  |
| ------------------------------------------------ | -------------- | ----------------- | --------------- |
| PUT x-amz-checksum-crc32c: stored, given back    | yes            | only with x-amz-sdk-checksum-algorithm (SDKs send it; so do we) | yes |
| ... a wrong one is refused                        | BadDigest      | no: stored as sent | BadDigest (its message speaks of Content-MD5) |
| UploadPart: a wrong part checksum refused          | BadDigest      | no                | BadDigest       |
| Complete FULL_OBJECT: the whole checksum checked  | yes            | no: computes its own from the parts | BadDigest |
| the object's checksum after a FULL_OBJECT upload   | CRC32C of the bytes | CRC32C of the bytes, CRC32 (zlib) without the crc32c package | CRC32C of the bytes |
| GET/HEAD with x-amz-checksum-mode: ENABLED        | checksum + type | checksum; type only for multipart | checksum; type only for multipart |
| ... without the mode header, or for a Range       | none           | none              | none            |
| a COMPOSITE checksum on GET                        | "xxx-N", COMPOSITE | GET "xxx-N", HEAD "xxx"; COMPOSITE | "xxx-N" on both; COMPOSITE |

moto computes CRC32C with the `crc32c` package (the moto[s3crc32c] extra) and silently falls
back to zlib's CRC32 without it, so MotoServer refuses to start without that package: every
multipart object would otherwise carry a wrong checksum, which the store's GET (rightly)
refuses.
"""
import http.client
import http.server
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from gcsserver import _ThreadedHttpServer
from servers import ServerStartError, free_port
from servers.nginx import _port_open

# Requests moto serves without checking: CreateUser, CreateAccessKey, PutUserPolicy.
_IAM_SETUP_REQUESTS = 3

_S3_ALL = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:*", "sts:*", "iam:*"], "Resource": "*"}],
})


class S3TestServer:
    """What every S3 server of the tests offers (needs endpoint, region, bucket and the
    access key pair, and _start_once/stop): start with retries, a botocore client, store
    options and URLs, a context manager."""

    start_timeout = 60.0

    def start(self, timeout=None):
        last = None
        for _ in range(3):  # a free port can be taken between choosing and binding it
            try:
                self._start_once(self.start_timeout if timeout is None else timeout)
                return self
            except ServerStartError as exc:
                last = exc
                self.stop()
        raise last

    @staticmethod
    def _session():
        import botocore.session
        return botocore.session.get_session()

    def client(self, **kwargs):
        """A botocore S3 client on this server (path-style), for set-up and checks."""
        import botocore.config
        cfg = botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2},
                                     request_checksum_calculation="when_required",
                                     response_checksum_validation="when_required")
        args = dict(region_name=self.region, endpoint_url=self.endpoint,
                    aws_access_key_id=self.access_key_id,
                    aws_secret_access_key=self.secret_access_key, config=cfg)
        args.update(kwargs)
        return self._session().create_client("s3", **args)

    def store_options(self, **extra):
        opts = {"endpoint_url": self.endpoint, "region": self.region,
                "access_key_id": self.access_key_id, "secret_access_key": self.secret_access_key}
        opts.update(extra)
        return opts

    def url(self, prefix=""):
        return f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class MotoServer(S3TestServer):
    def __init__(self, auth=False, region="us-east-1", bucket=None):
        self.auth = auth
        self.region = region
        self.bucket = bucket or f"bucket-{uuid.uuid4().hex[:12]}"
        self.proc = None
        self.port = None
        self.endpoint = None
        self.log_path = None
        # Before auth is on, any key works; with auth these become the IAM user's.
        self.access_key_id = "testing"
        self.secret_access_key = "testing"

    # ------------------------------------------------------------------ lifecycle

    def _start_once(self, timeout):
        if importlib.util.find_spec("crc32c") is None:
            raise ServerStartError("moto needs the crc32c package for CRC32C checksums (it uses zlib's "
                                   "CRC32 without it): pip install 'moto[server,s3crc32c]'")
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            env.pop(var, None)
        env["AWS_DEFAULT_REGION"] = self.region
        env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
        if self.auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(_IAM_SETUP_REQUESTS)
        fd, self.log_path = tempfile.mkstemp(prefix="moto-", suffix=".log")
        log = os.fdopen(fd, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        # Readiness by TCP connect only: an HTTP probe would use up unauthenticated requests.
        while not _port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None:
                raise ServerStartError(f"moto server exited ({self.proc.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise ServerStartError(f"moto server did not listen on {self.endpoint}:\n{self.log()}")
            time.sleep(0.05)
        if self.auth:
            self._make_iam_user()
        self.client().create_bucket(Bucket=self.bucket)

    def _make_iam_user(self):
        iam = self._session().create_client(
            "iam", region_name=self.region, endpoint_url=self.endpoint,
            aws_access_key_id="setup", aws_secret_access_key="setup")
        user = "cfs-test"
        iam.create_user(UserName=user)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        iam.put_user_policy(UserName=user, PolicyName="s3-all", PolicyDocument=_S3_ALL)
        self.access_key_id = key["AccessKeyId"]
        self.secret_access_key = key["SecretAccessKey"]

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self.log_path and os.path.exists(self.log_path):
            os.unlink(self.log_path)
            self.log_path = None

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()[-20000:]
        except OSError:
            return "(no log)"

    # --------------------------------------------------------------------- access



class CorruptingProxy(_ThreadedHttpServer):
    """An HTTP proxy on 127.0.0.1 in front of an S3 server that flips one byte (the middle
    one) of the body of the next GETs to a path, as a bad disk, NIC or middlebox would: the
    headers (ETag, x-amz-checksum-*) stay as the server sent them. Everything else passes
    through unchanged, the Host header included, so SigV4 signatures made for the proxy's
    address still verify upstream. `requests`: (method, path, corrupted) of each request."""

    def __init__(self, upstream, host="127.0.0.1"):
        self.upstream = upstream.rstrip("/")
        self.host = host
        self.port = None
        self.lock = threading.Lock()
        self.pending = {}
        self.requests = []

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def corrupt(self, path, times=1):
        with self.lock:
            self.pending[path] = self.pending.get(path, 0) + times

    def gets(self, path):
        with self.lock:
            return [r for r in self.requests if r[0] == "GET" and r[1] == path]

    def start(self):
        proxy = self
        host, port = self.upstream.split("://", 1)[1].rsplit(":", 1)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                path = self.path.split("?", 1)[0]
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
                try:
                    conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    for k, v in self.headers.items():
                        if k.lower() not in ("connection", "keep-alive", "expect"):  # the body is here
                            conn.putheader(k, v)
                    conn.endheaders(body)
                    resp = conn.getresponse()
                    data = resp.read()
                    headers = resp.getheaders()
                finally:
                    conn.close()
                bad = False
                with proxy.lock:
                    if self.command == "GET" and data and proxy.pending.get(path):
                        proxy.pending[path] -= 1
                        bad = True
                    proxy.requests.append((self.command, path, bad))
                if bad:
                    data = bytearray(data)
                    data[len(data) // 2] ^= 0xFF
                    data = bytes(data)
                self.send_response(resp.status)
                length = str(len(data))
                for k, v in headers:
                    if k.lower() == "content-length" and self.command == "HEAD":
                        length = v  # the object's, with no body
                    elif k.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        return self._serve(Handler, "s3-corrupting-proxy")
