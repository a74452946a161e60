"""The project's own fault-injecting HTTP/1.1 server (asyncio streams, no framework).

    srv = FaultServer().start()           # background thread with its own event loop
    srv.url                               # http://127.0.0.1:PORT
    srv.put("/b/k", b"data")              # seed an object directly
    srv.add_faults("/b/k", ["503", "429:2", "reset", "short", "stall:5", "corrupt", "500"])
    ...                                   # one fault consumed per request to that path,
                                          # then normal service
    srv.requests("/b/k")                  # [RecordedRequest(method, path, headers, time, ...)]
    srv.stop()

Objects live in memory under their percent-decoded path (without the query string).
GET, HEAD, PUT, DELETE; keep-alive; bodies by Content-Length (chunked request bodies and
`Expect: 100-continue` are understood too). Range requests: `bytes=a-b`, `bytes=a-`,
`bytes=-n` (206 with Content-Range; 416 when start >= size; several ranges are ignored
and the whole object is sent with 200). A GET on a path ending in "/" answers with a JSON
directory listing in the shape of nginx's `autoindex_format json`:
`[{"name": ..., "type": "file"|"directory", "mtime": "<HTTP date>", "size": N}, ...]`
(404 for a directory that holds nothing, except "/").

Faults (strings), each applied to the response the request would otherwise get:
- "503", "500", "404", any 3-digit status: that status with a short body;
  "503:1", "429:2": the same with `Retry-After: <seconds>`.
- "reset": headers and half the body, then a TCP reset (no body: reset at once).
- "short": Content-Length of the full body, half the body, then a clean close.
- "stall:S": headers and half the body, sleep S seconds, then the rest.
- "corrupt": the full body with one byte flipped (its middle byte).
- "close": close the connection without answering.
- "delay:S": sleep S seconds (less if the client goes away first), then answer normally.
- "trickle:S": the full body in small pieces spread over S seconds (slow but moving).
- "chunked": the full body with `Transfer-Encoding: chunked` (pieces of up to 64 KiB), no
  Content-Length: a body whose length the client learns only at its end.
- "claim:N": a hostile length: `Content-Length: N`, the real (shorter) body, then nothing
  until the client gives up (at most a minute).

A slow tail: `srv.set_slow(0.01, 1.0, seed=1)` delays a fraction of the GET and HEAD
responses (without a scripted fault) by that many seconds before their headers, chosen by a
hash of (seed, path, how many requests that path had before): deterministic for a seed,
and a second request for a slow key is slow again only with the same small chance
(`first_only=True`: never; `random_draw=True`: a seeded random draw per request instead of
the hash). Recorded fault: "slow".

No pytest here: benchmarks may import this module too.
"""
import asyncio
import collections
import email.utils
import hashlib
import json
import random
import socket
import struct
import threading
import time
import urllib.parse

RecordedRequest = collections.namedtuple(
    "RecordedRequest", "method path raw_path query headers time body_size fault conn")
RecordedRequest.__doc__ = """One request as the server saw it: method, decoded path, raw path,
query string, headers (list of (name, value)), arrival time (time.time()), body size, the
fault applied (its string, or None) and conn, a number per TCP connection (to see reuse)."""


def _http_date(t):
    return email.utils.formatdate(t, usegmt=True)


_REASONS = {
    200: "OK", 201: "Created", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict",
    411: "Length Required", 416: "Range Not Satisfiable", 429: "Too Many Requests",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}


def normalize_path(path):
    """The key the server files a request under: percent-decoded, no query, leading '/'."""
    path = path.split("?", 1)[0]
    path = urllib.parse.unquote(path, errors="surrogateescape")
    if not path.startswith("/"):
        path = "/" + path
    return path


def parse_fault(spec):
    """'503' -> ('status', 503, None); '429:2' -> ('status', 429, 2.0); 'stall:5' ->
    ('stall', None, 5.0); 'reset' -> ('reset', None, None) ..."""
    if not isinstance(spec, str):
        raise TypeError(f"fault must be a string, not {type(spec).__name__}")
    name, _, arg = spec.partition(":")
    value = float(arg) if arg else None
    if name.isdigit() and len(name) == 3:
        return ("status", int(name), value)
    if name in ("reset", "short", "corrupt", "close", "chunked"):
        if arg:
            raise ValueError(f"fault {spec!r} takes no argument")
        return (name, None, None)
    if name == "claim":
        if value is None or value != int(value) or value < 0:
            raise ValueError(f"fault {spec!r} needs a byte count, e.g. claim:1073741824")
        return (name, int(value), None)
    if name in ("stall", "delay", "trickle"):
        if value is None:
            raise ValueError(f"fault {spec!r} needs seconds, e.g. {name}:2")
        return (name, None, value)
    raise ValueError(f"unknown fault {spec!r}")


class _Response:
    __slots__ = ("status", "headers", "body", "send_body")

    def __init__(self, status, headers=None, body=b"", send_body=True):
        self.status = status
        self.headers = headers if headers is not None else []
        self.body = body
        self.send_body = send_body

    def head_bytes(self, content_length=None, keep_alive=True, chunked=False):
        lines = [f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Status')}"]
        lines.append(f"Date: {_http_date(time.time())}")
        lines.append("Server: cfs-faultserver")
        names = {k.lower() for k, _ in self.headers}
        for k, v in self.headers:
            if not (chunked and k.lower() == "content-length"):
                lines.append(f"{k}: {v}")
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        elif "content-length" not in names:
            n = len(self.body) if content_length is None else content_length
            lines.append(f"Content-Length: {n}")
        lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# -- HTTP/1.1 pieces shared with the fault proxy (faultproxy.py) --------------------

async def read_request_head(reader):
    """(method, target, version, header_list, headers) of the next request on a connection:
    header_list as sent [(name, value)], headers {lower name: value}. None when the client
    closed between requests; ValueError for a request line that does not parse."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) != 3:
        raise ValueError(f"bad request line {lines[0]!r}")
    method, target, version = parts
    header_list, headers = parse_header_lines(lines[1:])
    return method, target, version, header_list, headers


def parse_header_lines(lines):
    """[(name, value)] and {lower name: value} of header lines (empty lines skipped)."""
    header_list, headers = [], {}
    for line in lines:
        if not line:
            continue
        k, _, v = line.partition(":")
        k, v = k.strip(), v.strip()
        header_list.append((k, v))
        headers[k.lower()] = v
    return header_list, headers


async def read_chunked(reader):
    """A body in chunked transfer coding (trailers read and dropped)."""
    parts = []
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def read_body(reader, writer, headers):
    """A request's body (answering `Expect: 100-continue` first): chunked or by
    Content-Length."""
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await read_chunked(reader)
    n = int(headers.get("content-length", "0") or 0)
    return await reader.readexactly(n) if n else b""


def abort(writer):
    """Close with a TCP RST (SO_LINGER 0) so the client sees a reset, not a clean end."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


def _client_gone(writer, reader):
    return writer.is_closing() or (reader is not None and reader.at_eof())


async def send_response(writer, response, fault, keep_alive, reader=None):
    """Send `response` (None: close without answering) with `fault` (a parse_fault tuple or
    None) applied; True if the connection may serve another request. With the connection's
    `reader`, a stall ends when the client goes away (it no longer counts as in flight)."""
    kind = fault[0] if fault is not None else None
    if kind == "delay":
        # held back, but no longer than the client waits (it no longer counts in flight)
        end = time.monotonic() + fault[2]
        while time.monotonic() < end and not _client_gone(writer, reader):
            await asyncio.sleep(min(0.05, max(0.0, end - time.monotonic())))
        if _client_gone(writer, reader):
            return False
        kind = None
    if response is None or kind == "close":
        writer.close()
        return False
    body = response.body if response.send_body else b""
    full_len = len(response.body)
    if kind == "reset":
        if len(body) >= 2:
            writer.write(response.head_bytes(full_len, keep_alive) + body[:len(body) // 2])
            await writer.drain()
        abort(writer)
        return False
    if kind == "short":
        if len(body) >= 2:
            writer.write(response.head_bytes(full_len, keep_alive=False) + body[:len(body) // 2])
            await writer.drain()
        writer.close()
        return False
    if kind == "stall":
        half = len(body) // 2
        writer.write(response.head_bytes(full_len, keep_alive) + body[:half])
        await writer.drain()
        end = time.monotonic() + fault[2]
        while time.monotonic() < end and not _client_gone(writer, reader):
            await asyncio.sleep(min(0.1, max(0.0, end - time.monotonic())))
        if _client_gone(writer, reader):
            return False
        writer.write(body[half:])
        await writer.drain()
        return keep_alive
    if kind == "claim":
        writer.write(response.head_bytes(fault[1], keep_alive) + body)
        await writer.drain()
        for _ in range(600):  # until the client closes the connection
            if writer.is_closing() or writer.transport.get_extra_info("socket") is None:
                break
            await asyncio.sleep(0.1)
        writer.close()
        return False
    if kind == "trickle":
        writer.write(response.head_bytes(full_len, keep_alive))
        pieces = min(len(body), 20)
        for n in range(pieces):
            await asyncio.sleep(fault[2] / pieces)
            if writer.is_closing():
                return False
            writer.write(body[n * len(body) // pieces:(n + 1) * len(body) // pieces])
            await writer.drain()
        return keep_alive
    if kind == "chunked" and response.send_body:
        writer.write(response.head_bytes(keep_alive=keep_alive, chunked=True))
        for i in range(0, len(body), 64 * 1024):
            piece = body[i:i + 64 * 1024]
            writer.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return keep_alive
    if kind == "corrupt" and body:
        i = len(body) // 2
        body = body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1:]
    writer.write(response.head_bytes(full_len, keep_alive) + body)
    await writer.drain()
    return keep_alive


class LoopServer:
    """An asyncio TCP server on its own event loop in a background thread: start(), stop(),
    url, a context manager. A subclass serves each connection in `_serve(reader, writer)`;
    the connection is closed when that returns or a connection error ends it."""

    thread_name = "cfs-loopserver"

    def __init__(self, host="127.0.0.1", port=0, reuse_port=False):
        self.host = host
        self._want_port = port
        self._reuse_port = reuse_port  # several processes serving one port (benchmarks)
        self.port = None
        self._loop = None
        self._thread = None
        self._server = None
        self._conn_tasks = set()
        self._ready = threading.Event()
        self._start_error = None

    # -- lifecycle -----------------------------------------------------------------
    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def start(self, timeout=10.0):
        if self._thread is not None:
            return self
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        name = type(self).__name__
        if not self._ready.wait(timeout):
            raise RuntimeError(f"{name} did not start within {timeout}s")
        if self._start_error is not None:
            self._thread.join(1)
            self._thread = None
            raise RuntimeError(f"{name} did not start: {self._start_error!r}")
        return self

    def stop(self):
        if self._thread is None:
            return
        loop = self._loop
        if loop is not None and loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            try:
                fut.result(10)
            except Exception:
                pass
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return f"<{type(self).__name__} {self.url if self.port else '(not started)'}>"

    def _run(self):
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(asyncio.start_server(
                self._handle, self.host, self._want_port, limit=1 << 20, backlog=1024,
                reuse_port=self._reuse_port or None))
            self.port = self._server.sockets[0].getsockname()[1]
        except Exception as e:  # reported by start()
            self._start_error = e
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                self._loop = None

    async def _shutdown(self):
        self._server.close()
        for t in list(self._conn_tasks):
            t.cancel()
        if self._conn_tasks:
            await asyncio.wait(list(self._conn_tasks), timeout=5)
        await self._server.wait_closed()

    async def _handle(self, reader, writer):
        task = asyncio.current_task()
        self._conn_tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                asyncio.CancelledError, OSError):
            pass
        finally:
            self._conn_tasks.discard(task)
            try:
                writer.close()
            except Exception:
                pass

    async def _serve(self, reader, writer):
        raise NotImplementedError


class FaultServer(LoopServer):
    """In-memory object server with a programmable fault queue per path."""

    thread_name = "cfs-faultserver"

    def __init__(self, host="127.0.0.1", port=0, hide_dotfiles=False, reuse_port=False):
        super().__init__(host, port, reuse_port)
        self.hide_dotfiles = hide_dotfiles
        self._lock = threading.Lock()
        self._objects = {}       # normalized path -> (bytes, mtime)
        self._extra_headers = {} # normalized path -> [(name, value)] set by put(headers=)
        self._listings = {}      # normalized directory path -> listing body set by set_listing
        self._faults = collections.defaultdict(collections.deque)
        self._requests = []
        self._conn_counter = 0
        self._in_flight = 0
        self.max_in_flight = 0
        self._spans = []         # (path, start, end) of every answered request
        self._capacity = None    # set_capacity: answer like a store under load
        self._service_time = 0.0
        self._slow = None        # set_slow: (fraction, seconds, seed, first_only)
        self._slow_rng = None    # set_slow(random_draw=True)
        self._path_counts = collections.Counter()  # GET/HEAD requests per path, for set_slow

    # -- state, from any thread ----------------------------------------------------
    def put(self, path, data, mtime=None, headers=None):
        """Store an object; `headers` (list of (name, value)) are added to its GET/HEAD
        responses (an x-goog-hash, say), until it is replaced or deleted."""
        with self._lock:
            p = normalize_path(path)
            self._objects[p] = (bytes(data), mtime or time.time())
            self._extra_headers.pop(p, None)
            if headers:
                self._extra_headers[p] = list(headers)

    def set_listing(self, path, body):
        """Answer GETs of the directory `path` (ending in "/") with `body` as it is, in
        place of the JSON listing made from the objects (a malformed index, say)."""
        with self._lock:
            self._listings[normalize_path(path)] = bytes(body)

    def get(self, path):
        """Stored bytes at `path`, or None."""
        with self._lock:
            item = self._objects.get(normalize_path(path))
        return None if item is None else item[0]

    def delete(self, path):
        with self._lock:
            self._objects.pop(normalize_path(path), None)
            self._extra_headers.pop(normalize_path(path), None)

    def objects(self, prefix="/"):
        """{path: bytes} of every object whose path starts with `prefix`."""
        prefix = normalize_path(prefix)
        with self._lock:
            return {p: v[0] for p, v in self._objects.items() if p.startswith(prefix)}

    def add_faults(self, path, faults):
        parsed = [(f, parse_fault(f)) for f in faults]
        with self._lock:
            self._faults[normalize_path(path)].extend(parsed)

    def pending_faults(self, path):
        with self._lock:
            return [f for f, _ in self._faults.get(normalize_path(path), ())]

    def requests(self, path=None, method=None):
        """Recorded requests, oldest first, optionally only those to `path` (normalized
        like the server does) and/or with `method`."""
        norm = None if path is None else normalize_path(path)
        with self._lock:
            reqs = list(self._requests)
        return [r for r in reqs
                if (norm is None or r.path == norm) and (method is None or r.method == method)]

    def header(self, request, name):
        """The value of header `name` (any case) in a RecordedRequest, or None."""
        name = name.lower()
        for k, v in request.headers:
            if k.lower() == name:
                return v
        return None

    def set_capacity(self, capacity, service_time=0.0):
        """Answer like a store under load: every request takes `service_time` seconds, and
        one arriving while `capacity` requests are being answered gets 503 at once (its
        recorded fault: "capacity"). capacity=None: no limit. Scripted faults go first."""
        with self._lock:
            self._capacity, self._service_time = capacity, service_time

    def set_slow(self, fraction, seconds, seed=0, first_only=False, random_draw=False):
        """Delay `fraction` of GET and HEAD responses by `seconds` (a slow tail); each
        request is picked by a hash of (seed, path, the path's earlier GET/HEAD requests),
        or only a path's first request with first_only; with random_draw, by a random
        generator seeded with `seed` instead (for several processes sharing a port, which
        each see only some of a path's requests). fraction=0 or None: off."""
        if fraction and not 0 < fraction <= 1:
            raise ValueError("fraction must be in (0, 1]")
        with self._lock:
            self._slow = (float(fraction), float(seconds), seed, bool(first_only)) if fraction else None
            self._slow_rng = random.Random(seed) if fraction and random_draw else None
            self._path_counts.clear()

    def _is_slow(self, path, n):
        fraction, _, seed, first_only = self._slow
        if first_only and n:
            return False
        if self._slow_rng is not None:
            return self._slow_rng.random() < fraction
        digest = hashlib.blake2b(f"{seed}:{path}:{n}".encode("utf-8", "surrogateescape"),
                                 digest_size=8).digest()
        return int.from_bytes(digest, "big") < fraction * 2.0 ** 64

    def max_concurrency(self, prefix="/", since=None):
        """The most requests under `prefix` (a normalized path prefix) that were being
        answered at the same moment, from their receipt to their last byte sent; only
        requests received at `since` (time.monotonic()) or later, if given."""
        prefix = normalize_path(prefix)
        with self._lock:
            spans = [(a, b) for p, a, b in self._spans
                     if p.startswith(prefix) and (since is None or a >= since)]
        events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans],
                        key=lambda e: (e[0], e[1]))  # an end before a start at the same time
        peak = cur = 0
        for _, d in events:
            cur += d
            peak = max(peak, cur)
        return peak

    def in_flight(self):
        """Requests being answered now (received, last byte not yet sent)."""
        with self._lock:
            return self._in_flight

    def reset_max_in_flight(self):
        """Restart the high-water mark of requests being answered at the same time."""
        with self._lock:
            self.max_in_flight = self._in_flight

    def clear_requests(self):
        with self._lock:
            self._requests.clear()
            self._spans.clear()

    def reset(self):
        """Forget objects, faults and recorded requests."""
        with self._lock:
            self._objects.clear()
            self._extra_headers.clear()
            self._listings.clear()
            self._faults.clear()
            self._requests.clear()
            self._spans.clear()
            self._capacity, self._service_time = None, 0.0
            self._slow = None
            self._path_counts.clear()

    # -- HTTP ----------------------------------------------------------------------
    async def _serve(self, reader, writer):
        with self._lock:
            self._conn_counter += 1
            conn = self._conn_counter
        while await self._one_request(reader, writer, conn):
            pass

    async def _one_request(self, reader, writer, conn):
        try:
            head = await read_request_head(reader)
        except ValueError:
            writer.write(_Response(400, body=b"bad request line\n").head_bytes(keep_alive=False)
                         + b"bad request line\n")
            await writer.drain()
            return False
        if head is None:
            return False  # client closed between requests
        method, target, version, header_list, headers = head
        body = await read_body(reader, writer, headers)
        raw_path, _, query = target.partition("?")
        path = normalize_path(raw_path)
        conn_hdr = headers.get("connection", "").lower()
        keep_alive = (version == "HTTP/1.1" and conn_hdr != "close") or conn_hdr == "keep-alive"

        with self._lock:
            queue = self._faults.get(path)
            fault_spec, fault = queue.popleft() if queue else (None, None)
            if fault is None and self._capacity is not None and self._in_flight >= self._capacity:
                fault_spec, fault = "capacity", ("status", 503, None)
            elif fault is None and self._service_time:
                fault = ("delay", None, self._service_time)
            if self._slow is not None and method in ("GET", "HEAD"):
                n = self._path_counts[path]
                self._path_counts[path] = n + 1
                if fault is None and self._is_slow(path, n):
                    fault_spec, fault = "slow", ("delay", None, self._slow[1])
            self._requests.append(RecordedRequest(
                method, path, raw_path, query, header_list, time.time(), len(body), fault_spec,
                conn))
            response = self._respond(method, path, query, headers, body, fault)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        start = time.monotonic()
        try:
            return await send_response(writer, response, fault, keep_alive, reader)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._spans.append((path, start, time.monotonic()))

    def _respond(self, method, path, query, headers, body, fault):
        """The normal response (under the lock). A status fault replaces it, and a PUT or
        DELETE that is answered with a fault does not change the stored objects."""
        if fault is not None and fault[0] == "status":
            status, retry_after = fault[1], fault[2]
            hdrs = [("Content-Type", "text/plain")]
            if retry_after is not None:
                ra = int(retry_after) if retry_after == int(retry_after) else retry_after
                hdrs.append(("Retry-After", str(ra)))
            msg = f"injected fault {status}\n".encode()
            return _Response(status, hdrs, msg, send_body=(method != "HEAD"))
        if fault is not None and fault[0] == "close":
            return None
        mutate = fault is None or fault[0] == "delay"
        if method in ("GET", "HEAD"):
            if path in self._listings:
                return _Response(200, [("Content-Type", "application/json")],
                                 self._listings[path], send_body=(method == "GET"))
            if path.endswith("/"):
                return self._listing(method, path)
            item = self._objects.get(path)
            if item is None:
                if any(p.startswith(path + "/") for p in self._objects):
                    return _Response(301, [("Location", path + "/")], b"",
                                     send_body=(method == "GET"))
                return _Response(404, [("Content-Type", "text/plain")], b"not found\n",
                                 send_body=(method == "GET"))
            data, mtime = item
            base = [("Content-Type", "application/octet-stream"),
                    ("Last-Modified", _http_date(mtime)),
                    ("ETag", '"%s"' % hashlib.md5(data).hexdigest()),
                    ("Accept-Ranges", "bytes")] + self._extra_headers.get(path, [])
            rng = headers.get("range")
            if rng is not None:
                parsed = self._parse_range(rng, len(data))
                if parsed == "unsatisfiable":
                    return _Response(416, [("Content-Range", f"bytes */{len(data)}")], b"",
                                     send_body=(method == "GET"))
                if parsed is not None:
                    a, b = parsed
                    return _Response(206, base + [("Content-Range", f"bytes {a}-{b}/{len(data)}")],
                                     data[a:b + 1], send_body=(method == "GET"))
            return _Response(200, base, data, send_body=(method == "GET"))
        if method == "PUT":
            if path.endswith("/"):
                return _Response(409, [("Content-Type", "text/plain")], b"cannot PUT to a collection\n")
            existed = path in self._objects
            if mutate:
                self._objects[path] = (body, time.time())
                self._extra_headers.pop(path, None)
            return _Response(204 if existed else 201, [], b"")
        if method == "DELETE":
            if path not in self._objects:
                return _Response(404, [("Content-Type", "text/plain")], b"not found\n")
            if mutate:
                del self._objects[path]
                self._extra_headers.pop(path, None)
            return _Response(204, [], b"")
        return _Response(405, [("Allow", "GET, HEAD, PUT, DELETE")], b"method not allowed\n")

    @staticmethod
    def _parse_range(value, size):
        """(first, last) inclusive, 'unsatisfiable', or None to ignore the header."""
        value = value.strip()
        if not value.startswith("bytes=") or "," in value:
            return None
        spec = value[len("bytes="):].strip()
        first, dash, last = spec.partition("-")
        if not dash:
            return None
        try:
            if first == "":
                n = int(last)
                if n <= 0 or size == 0:
                    return "unsatisfiable"
                return (max(0, size - n), size - 1)
            a = int(first)
            b = int(last) if last != "" else size - 1
        except ValueError:
            return None
        if a >= size:
            return "unsatisfiable"
        if b < a:
            return None
        return (a, min(b, size - 1))

    def _listing(self, method, path):
        entries = {}
        for p, (data, mtime) in self._objects.items():
            if not p.startswith(path):
                continue
            rest = p[len(path):]
            name, slash, _ = rest.partition("/")
            if not name or (self.hide_dotfiles and name.startswith(".")):
                continue
            if slash:
                prev = entries.get(name)
                if prev is None or prev["type"] != "file":
                    entries[name] = {"name": name, "type": "directory",
                                     "mtime": _http_date(mtime)}
            else:
                entries[name] = {"name": name, "type": "file",
                                 "mtime": _http_date(mtime), "size": len(data)}
        if not entries and path != "/":
            return _Response(404, [("Content-Type", "text/plain")], b"not found\n",
                             send_body=(method == "GET"))
        # nginx lists directories first, then files, each by name
        items = sorted(entries.values(), key=lambda e: (e["type"] != "directory", e["name"]))
        body = ("[\n" + ",\n".join(json.dumps(e, ensure_ascii=False) for e in items)
                + ("\n" if items else "") + "]\n").encode("utf-8", "surrogateescape")
        return _Response(200, [("Content-Type", "application/json")], body,
                         send_body=(method == "GET"))


if __name__ == "__main__":  # manual use: python3 tests/servers/faultserver.py
    srv = FaultServer().start()
    print(srv.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        srv.stop()
