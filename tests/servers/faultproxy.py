"""A fault-injecting reverse proxy (asyncio streams, no framework) for chaos tests.

    proxy = FaultProxy("http://127.0.0.1:9000", rate=0.2, seed=1).start()  # a thread
    proxy.url                             # http://127.0.0.1:PORT: point the client here
    proxy.counts()                        # {"requests": N, "503": n, "reset": n, ...}
    proxy.drain(10)                       # wait until every request received so far is done
    proxy.stop()                          # the proxy only: the upstream runs on

    FaultProxyProcess(upstream, **same options).start()  # the same in a child process

Each request is read whole (chunked bodies and `Expect: 100-continue` understood), then
forwarded to the upstream on a connection of its own with method, target (path and query),
headers (Host as the client sent it: an S3 signature covers it) and body unchanged,
hop-by-hop headers aside. The answer goes back to the client with a Content-Length, and a
Location that points at the upstream (a GCS resumable upload's session URI) is rewritten
to point at the proxy, so the whole session goes through it too.

With probability `rate` a request meets a fault, drawn from a seeded RNG among `kinds`:
- before forwarding (nothing reaches the upstream): "500", "502", "503", "504", "429"
  (with `Retry-After`), "close" (the connection closed without an answer), "delay"
  (a pause shorter than a stall, then forwarded as usual);
- on the response (GET: the upstream has answered): "reset" (half the body, then a TCP
  reset), "short" (half the body, then a clean close), "stall" (half the body, then
  nothing for `stall_seconds`), "trickle" (the body in small pieces over
  `trickle_seconds`), "corrupt" (one byte flipped, only where `corrupt_when` says the
  client checks a checksum; elsewhere a "reset" instead);
- "lost" (PUT, POST, DELETE): forwarded and applied, then the connection dropped without
  the answer. "reset" and "short" on a write are the same thing seen half way.
A fault on the response of a body too small to cut (HEAD, empty) becomes a "reset".
`counts()` says how many of each were applied; `script(kind, method, contains)` gives the
next matching request that fault. `gcs_sessions=True` answers a GCS resumable session's
status queries, and chunks it already holds, in the proxy (GcsSessions: fake-gcs-server
cannot). `log=PATH` appends a JSON line per request: [time, method, target, Content-Range,
body size, fault, status answered].

No pytest here.
"""
import asyncio
import json
import os
import random
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from .faultserver import (LoopServer, _Response, abort, parse_header_lines, read_body,
                          read_chunked, read_request_head, send_response)

STATUS_FAULTS = ("500", "502", "503", "504", "429")
BEFORE_FORWARDING = STATUS_FAULTS + ("close", "delay")
ON_RESPONSE = ("reset", "short", "stall", "trickle", "corrupt")
ANSWER_LOST = "lost"
FAULT_KINDS = BEFORE_FORWARDING + ON_RESPONSE + (ANSWER_LOST,)
WRITE_METHODS = frozenset(["PUT", "POST", "DELETE", "PATCH"])

# Connection-level headers: not forwarded either way (bodies are re-framed with a
# Content-Length, connections are the proxy's own).
_HOP_BY_HOP = frozenset(["connection", "keep-alive", "proxy-connection", "transfer-encoding",
                         "te", "trailer", "upgrade", "expect", "content-length"])


def _s3_checksummed(method, req_headers, query, status, resp_headers):
    """S3 (verify_etag): a whole-object GET is checked against a plain-MD5 ETag (not a
    multipart upload's "<md5>-<parts>")."""
    return (method == "GET" and "range" not in req_headers and status == 200
            and re.fullmatch(r'"[0-9a-fA-F]{32}"', resp_headers.get("etag", "")) is not None)


def _gcs_checksummed(method, req_headers, query, status, resp_headers):
    """GCS: a whole-object media download is checked against x-goog-hash."""
    return (method == "GET" and "range" not in req_headers and status == 200
            and "alt=media" in query and "x-goog-hash" in resp_headers)


# corrupt_when= names: the responses whose corruption the client can detect
CHECKSUMMED = {"s3": _s3_checksummed, "gcs": _gcs_checksummed}


class GcsSessions:
    """What a GCS resumable session's status query (a PUT of `Content-Range: bytes */N`, no
    body) should be answered, from the last answer the upstream gave that session: 308 with
    its Range (none: nothing held), or the completing answer replayed once it completed.
    fake-gcs-server takes a status query as the final chunk and completes the object with
    what it holds, where GCS answers 308 and keeps the session open
    (test_gcs.test_emulator_status_query_completes_the_upload): a proxy in front of it
    answers status queries itself. Thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._last = {}  # upload_id -> Range value or None, or (status, headers, body)
        self._sending = {}  # upload_id -> requests of that session at the upstream now

    @staticmethod
    def upload_id(target):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
        return query.get("upload_id", [None])[0]

    @classmethod
    def status_query(cls, method, target, content_range, body):
        """The session's upload_id if this request is a status query, else None."""
        if method == "PUT" and not body and content_range.startswith("bytes */"):
            return cls.upload_id(target)
        return None

    def held_again(self, method, target, content_range, body):
        """The session's upload_id if this is a chunk that starts inside what the session
        already holds (a resend), else None. GCS places a chunk by its Content-Range: bytes
        it holds are not taken twice; fake-gcs-server appends every chunk it gets, so a
        proxy in front of it answers such a chunk itself."""
        upload_id = self.upload_id(target)
        m = re.fullmatch(r"bytes (\d+)-\d+/\d+", content_range)
        if method != "PUT" or not body or not upload_id or not m:
            return None
        with self._lock:
            last = self._last.get(upload_id)
        if isinstance(last, tuple):
            return upload_id
        held = int(last.rsplit("-", 1)[1]) + 1 if last else 0
        return upload_id if int(m.group(1)) < held else None

    def sending(self, target, delta):
        """A request of the session `target` names went to the upstream (+1) or came back
        (-1): an answer to a status query waits for those (GCS answers with what it has
        received, and the client resends what the answer says is missing)."""
        upload_id = self.upload_id(target)
        if upload_id:
            with self._lock:
                self._sending[upload_id] = self._sending.get(upload_id, 0) + delta

    def busy(self, upload_id):
        with self._lock:
            return self._sending.get(upload_id, 0) > 0

    def note(self, method, target, status, headers, body):
        """Remember the upstream's answer to a session's request."""
        upload_id = self.upload_id(target)
        if not upload_id:
            return
        with self._lock:
            if status == 308:
                self._last[upload_id] = dict((k.lower(), v) for k, v in headers).get("range")
            elif method == "PUT" and status in (200, 201):
                self._last[upload_id] = (status, list(headers), body)

    def answer(self, upload_id):
        """(status, headers, body) for a status query of that session."""
        with self._lock:
            last = self._last.get(upload_id)
        if isinstance(last, tuple):
            return last
        return 308, [("Range", last)] if last else [], b""


async def read_response(reader, method):
    """(status, header_list, headers, body) of an HTTP/1.1 response (1xx skipped)."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        header_list, headers = parse_header_lines(lines[1:])
        if not 100 <= status < 200:
            break
    if method == "HEAD" or status in (204, 304):
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = await read_chunked(reader)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
    return status, header_list, headers, body


class _Upstream(_Response):
    """An answer to send on, and whether the client checks its body against a checksum."""
    __slots__ = ("checksummed",)

    def __init__(self, status, headers, body, send_body, checksummed=False):
        super().__init__(status, headers, body, send_body)
        self.checksummed = checksummed


class FaultProxy(LoopServer):
    """Forwards to `upstream` (http://host:port), injecting faults; see the module doc."""

    thread_name = "cfs-faultproxy"

    def __init__(self, upstream, rate=0.1, seed=0, kinds=FAULT_KINDS, corrupt_when=None,
                 stall_seconds=3.0, delay_seconds=0.5, trickle_seconds=1.0, retry_after=1,
                 upstream_timeout=60.0, gcs_sessions=False, log=None, host="127.0.0.1", port=0):
        super().__init__(host, port)
        up = urllib.parse.urlsplit(upstream)
        if up.scheme != "http" or not up.port:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        self.upstream = upstream.rstrip("/")
        self._up_host, self._up_port = up.hostname, up.port
        self._up_netlocs = {f"{h}:{up.port}" for h in (up.hostname, "127.0.0.1", "localhost",
                                                       "0.0.0.0")}
        self.rate = rate
        self.kinds = tuple(kinds)
        if isinstance(corrupt_when, str):
            corrupt_when = CHECKSUMMED[corrupt_when]
        self._checksummed = corrupt_when
        self.stall_seconds = stall_seconds
        self.delay_seconds = delay_seconds
        self.trickle_seconds = trickle_seconds
        self.retry_after = retry_after
        self.upstream_timeout = upstream_timeout
        self._sessions = GcsSessions() if gcs_sessions else None
        self._log = open(log, "a", buffering=1) if log else None  # a JSON line per request
        self._rng = random.Random(seed)
        self._cond = threading.Condition()
        self._counts = {}
        self._seq = 0
        self._pending = set()  # seqs of requests read and not yet answered by the upstream
        self._scripted = []    # (kind, method, substring): see script()

    def stop(self):
        super().stop()
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- state, from any thread ----------------------------------------------------
    def counts(self):
        """{"requests": N, "forwarded": N, "upstream_errors": N, "location_rewrites": N,
        <fault kind>: N applied, ...}"""
        with self._cond:
            return dict(self._counts)

    def set_rate(self, rate):
        with self._cond:
            self.rate = rate

    def drain(self, timeout=30.0):
        """Wait until every request read so far has had its upstream answer (or will never
        reach the upstream): after it, nothing sent earlier can still land. True if so
        within `timeout`."""
        with self._cond:
            last = self._seq
            return self._cond.wait_for(lambda: all(s > last for s in self._pending), timeout)

    def _count(self, name):
        self._counts[name] = self._counts.get(name, 0) + 1

    def script(self, kind, method=None, contains=""):
        """The next request with this method (any: None) whose request line and headers
        contain `contains` gets fault `kind`, whatever the rate."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._cond:
            self._scripted.append((kind, method, contains))

    def _choose(self, method, target, header_list):
        with self._cond:
            self._count("requests")
            if self._scripted:
                text = "\n".join([f"{method} {target}"] + [f"{k}: {v}" for k, v in header_list])
                for i, (kind, m, contains) in enumerate(self._scripted):
                    if m in (None, method) and contains in text:
                        del self._scripted[i]
                        return kind
            if self._rng.random() >= self.rate:
                return None
            eligible = [k for k in self.kinds
                        if k in BEFORE_FORWARDING or k in ("reset", "short")
                        or (k == ANSWER_LOST and method in WRITE_METHODS)
                        or (k in ON_RESPONSE and method == "GET")]
            return self._rng.choice(eligible) if eligible else None

    # -- HTTP ----------------------------------------------------------------------
    async def _serve(self, reader, writer):
        while True:
            try:
                head = await read_request_head(reader)
            except ValueError:
                return
            if head is None:
                return
            method, target, version, header_list, headers = head
            body = await read_body(reader, writer, headers)
            conn_hdr = headers.get("connection", "").lower()
            keep_alive = (version == "HTTP/1.1" and conn_hdr != "close") or conn_hdr == "keep-alive"
            if not await self._one(reader, writer, method, target, header_list, headers, body,
                                   keep_alive):
                return

    async def _one(self, reader, writer, method, target, header_list, headers, body, keep_alive):
        response, kind = await self._answer(reader, method, target, header_list, headers, body)
        if kind is not None:
            self._applied(kind)
        if self._log is not None:
            self._log.write(json.dumps([round(time.time(), 3), method, target[:300],
                                        headers.get("content-range"), len(body), kind,
                                        response.status if response else None]) + "\n")
        if kind == ANSWER_LOST:
            abort(writer)
            return False
        fault = None
        if kind in ON_RESPONSE:
            seconds = {"stall": self.stall_seconds, "trickle": self.trickle_seconds}.get(kind)
            fault = (kind, None, seconds)
        return await send_response(writer, response, fault, keep_alive)

    async def _answer(self, reader, method, target, header_list, headers, body):
        """(the response to send, None to close without one; the fault applied)"""
        kind = self._choose(method, target, header_list)
        if kind in STATUS_FAULTS:
            extra = [("Retry-After", str(self.retry_after))] if kind == "429" else []
            return _Response(int(kind), [("Content-Type", "text/plain")] + extra,
                             f"injected fault {kind}\n".encode(), send_body=method != "HEAD"), kind
        if kind == "close":
            return None, kind
        with self._cond:
            self._seq += 1
            seq = self._seq
            self._pending.add(seq)
        try:
            if kind == "delay":
                await asyncio.sleep(self._rng.uniform(0.05, self.delay_seconds))
                if reader.at_eof():
                    return None, kind  # the client gave up meanwhile: forward nothing
            response = await self._forward(method, target, header_list, headers, body)
        finally:
            with self._cond:
                self._pending.discard(seq)
                self._cond.notify_all()
        if kind in ON_RESPONSE:
            body_len = len(response.body) if response.send_body else 0
            if kind == "corrupt" and not (body_len and response.checksummed):
                kind = "reset"
            elif kind in ("stall", "trickle") and body_len < 2:
                kind = "reset"
        return response, kind

    def _applied(self, kind):
        with self._cond:
            self._count(kind)

    async def _forward(self, method, target, header_list, req_headers, body):
        """The upstream's answer as a _Response (a 502 if the upstream failed)."""
        sessions = self._sessions
        crange = req_headers.get("content-range", "")
        session = sessions and sessions.upload_id(target)
        if session and sessions.busy(session):  # answer from all the session has received
            self._applied("session_waits")
            deadline = time.monotonic() + self.upstream_timeout
            while sessions.busy(session) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        query_of = sessions and sessions.status_query(method, target, crange, body)
        again_of = sessions and sessions.held_again(method, target, crange, body)
        try:
            if query_of or again_of:  # answered here, as GCS would (GcsSessions)
                self._applied("status_queries" if query_of else "chunks_held_again")
                status, up_list, up_body = sessions.answer(query_of or again_of)
                up_list = list(up_list) + [("Content-Length", str(len(up_body)))]
                up_headers = dict((k.lower(), v) for k, v in up_list)
            elif sessions:
                sessions.sending(target, +1)
                try:
                    status, up_list, up_headers, up_body = await asyncio.wait_for(
                        self._exchange(method, target, header_list, body), self.upstream_timeout)
                    sessions.note(method, target, status, up_list, up_body)
                finally:
                    sessions.sending(target, -1)
            else:
                status, up_list, up_headers, up_body = await asyncio.wait_for(
                    self._exchange(method, target, header_list, body), self.upstream_timeout)
        except (OSError, EOFError, ValueError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, asyncio.TimeoutError) as exc:
            self._applied("upstream_errors")
            return _Upstream(502, [("Content-Type", "text/plain")],
                             f"fault proxy: upstream failed: {exc!r}\n".encode(),
                             send_body=method != "HEAD")
        self._applied("forwarded")
        out = []
        for k, v in up_list:
            name = k.lower()
            if name in _HOP_BY_HOP or name in ("date", "server"):
                continue  # re-framed here; Date and Server are sent by _Response
            if name == "location":
                v = self._rewrite_location(v)
            out.append((k, v))
        if method == "HEAD" and "content-length" in up_headers:
            out.append(("Content-Length", up_headers["content-length"]))  # the object's size
        checksummed = bool(self._checksummed and self._checksummed(
            method, req_headers, target.partition("?")[2], status, up_headers))
        return _Upstream(status, out, up_body, method != "HEAD", checksummed)

    async def _exchange(self, method, target, header_list, body):
        reader, writer = await asyncio.open_connection(self._up_host, self._up_port,
                                                       limit=1 << 20)
        try:
            lines = [f"{method} {target} HTTP/1.1"]
            lines += [f"{k}: {v}" for k, v in header_list if k.lower() not in _HOP_BY_HOP]
            if body or method in ("PUT", "POST", "PATCH"):
                lines.append(f"Content-Length: {len(body)}")
            lines.append("Connection: close")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
            return await read_response(reader, method)
        finally:
            writer.close()

    def _rewrite_location(self, value):
        parts = urllib.parse.urlsplit(value)
        if parts.netloc not in self._up_netlocs:
            return value
        self._applied("location_rewrites")
        return urllib.parse.urlunsplit(parts._replace(scheme="http",
                                                      netloc=f"{self.host}:{self.port}"))


# --------------------------------------------------------------------- in a process

def _child_main():
    """A FaultProxy in this process (`python3 -m servers.faultproxy`), configured by the first
    JSON line on stdin, then driven by [method, args] lines; it answers each line with
    ["ok", value] or ["error", text] and ends at ["stop", []] or the end of stdin."""
    upstream, options = json.loads(sys.stdin.readline())

    def answer(status, value):
        sys.stdout.write(json.dumps([status, value]) + "\n")
        sys.stdout.flush()

    try:
        proxy = FaultProxy(upstream, **options).start()
    except Exception as exc:  # noqa: BLE001 (reported to the parent, which raises)
        answer("error", repr(exc))
        return
    answer("ok", proxy.port)
    try:
        for line in sys.stdin:
            name, args = json.loads(line)
            if name == "stop":
                break
            try:
                answer("ok", getattr(proxy, name)(*args))
            except Exception as exc:  # noqa: BLE001
                answer("error", repr(exc))
    finally:
        proxy.stop()
        answer("ok", None)


class FaultProxyProcess:
    """A FaultProxy in a child process: the process that measures its own descriptors and
    memory (a soak test) holds none of the proxy's sockets and buffers, and the proxy's
    Python runs beside the test's threads rather than under their GIL. Same options;
    counts(), drain(timeout), set_rate(rate), url; start() raises if it cannot start."""

    def __init__(self, upstream, host="127.0.0.1", **options):
        self.upstream = upstream
        self.host = host
        self.options = dict(options, host=host)
        self.port = None
        self._proc = None
        self._stderr = None
        self._lock = threading.Lock()

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def start(self, timeout=60.0):
        tests_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [tests_dir] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen([sys.executable, "-m", "servers.faultproxy"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._stderr, env=env, text=True)
        try:
            port = self._call(None, [self.upstream, self.options], timeout=timeout)
        except RuntimeError as exc:
            log = self._log()
            self.stop()
            raise RuntimeError(f"fault proxy to {self.upstream} did not start: {exc}\n{log}") from None
        self.port = port
        return self

    def _log(self):
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-4000:]

    def _call(self, name, args, timeout=120.0):
        """Send one line (a call, or the configuration when name is None) and read the
        answer within `timeout` seconds."""
        with self._lock:
            try:
                self._proc.stdin.write(json.dumps(args if name is None else [name, args]) + "\n")
                self._proc.stdin.flush()
            except OSError as exc:
                raise RuntimeError(f"fault proxy gone ({exc!r})") from None
            ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
            line = self._proc.stdout.readline() if ready else None
        if not line:
            raise RuntimeError(f"fault proxy: no answer to {name or 'its configuration'}"
                               + ("" if ready else f" within {timeout}s"))
        status, value = json.loads(line)
        if status != "ok":
            raise RuntimeError(f"fault proxy: {name or 'start'} failed: {value}")
        return value

    def counts(self):
        return self._call("counts", [])

    def set_rate(self, rate):
        return self._call("set_rate", [rate])

    def drain(self, timeout=30.0):
        return self._call("drain", [timeout], timeout=timeout + 30)

    def stop(self):
        if self._proc is None:
            return
        try:
            if self._proc.poll() is None:
                self._call("stop", [], timeout=20)
        except RuntimeError:
            pass
        try:
            self._proc.stdin.close()
            self._proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait(5)
        self._proc.stdout.close()
        self._stderr.close()
        self._proc = None

    def __repr__(self):
        return f"<FaultProxyProcess {self.url if self.port else '(not started)'} -> {self.upstream}>"


if __name__ == "__main__":
    _child_main()
