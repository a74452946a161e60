"""Store-to-store transfers: ``CloudFilesStore.transfer_to``.

Two paths, both over the engine's batch calls (the bytes never pass through Python one by
one, and every wait releases the GIL):

* on the server, when the destination can read the source where it is (same service and
  endpoint, same credentials: S3 CopyObject, or UploadPartCopy parts from 5 GiB; a GCS
  rewrite with its token loop): ``dest._copy_from(src, items)``, no bytes through here;
* otherwise streamed: the keys go in groups of at most ``window // 2`` bytes; the caller's
  thread reads a group (``_read_raw``, many objects in flight) while a helper thread writes
  the group before it (``_write_raw``), so at most ``window`` bytes are held at any time.
  A large object (LARGE_OBJECT bytes or more; the sizes of keys given without one come
  from HEADs, ``_sized``) kept as stored is not held at all: from a
  remote store its stored bytes are read as parallel ranges (``_read_ranges_into``),
  written into its new file as they arrive when the destination is file://
  (``_stream_to_files``), else into an unnamed temporary file, which is then the value
  written (``_spool_and_send``); from a file:// store its file is the value written
  (``_send_from_file``). A value from a file is read as the engine hashes and sends it,
  part by part. Re-encoded, a large object goes through a temporary file too (its ranges,
  or its file), which the engine transcodes as a stream (``raw=True`` with ``compress=``).
  From mem://, a large object travels whole in a group of its own.

``_read_raw`` and ``_write_raw`` are the one place the objects' bytes are read and
written: they carry each object's stored encoding, read and written as stored
(``raw=True``), or decoded and encoded anew when ``reencode`` asks for another encoding.

A streamed copy keeps the objects' attributes too (content type, cache control,
disposition, user metadata; the storage class between stores of one service kind) where
the destination stores them and the source has them (not file://): ``heads()`` of each
group, on a helper thread while the group is read (``_AttrReader``: one HEAD per object),
and each object written with its own (``_write_raw``: a ``setitems`` call per distinct set
of attributes, several at once). ``attributes=False`` skips the HEADs.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import tempfile
import threading
from collections.abc import Iterable, Iterator

from .errors import BatchError, CloudFilesError, OptionError, ProtocolError, StorageIOError

# Bytes held at once by a streamed transfer, by default.
DEFAULT_WINDOW = 256 << 20
# A streamed object at least this large (its size from the listing or a HEAD) is never held:
# from a remote store it is read in ranges of RANGE_PART bytes, many at once (one stream
# of one object is slow where the service serves each connection at its own pace).
LARGE_OBJECT = 64 << 20
RANGE_PART = 16 << 20
_LOCAL_SCHEMES = ("file://", "mem://")
# Ranges of a large object read at once, written (os.pwrite) into a file while the next
# ones are read: at most twice this many ranges held (128 MiB).
STREAM_RANGES = 4

# Options that say nothing about who the store is or which credentials it uses: two stores
# that differ only in these are the same account for a server-side copy.
_TRANSFER_ONLY = frozenset({
    "concurrency", "retries", "retry_base", "retry_cap", "connect_timeout", "stall_timeout",
    "buffer_size", "http2", "multipart_threshold", "multipart_chunksize",
    "multipart_concurrency", "multipart_copy_threshold", "multipart_copy_chunksize",
    "verify_etag", "verify_checksum", "checksum_algorithm", "sign_payload", "durable",
    "stale_temp_seconds",
})


def server_side_possible(src, dest) -> bool:
    """Whether ``dest`` can copy objects of ``src`` on the server: its backend says the
    source is the same service and endpoint, and the stores use the same credentials."""
    try:
        if not dest._can_copy_from(src):
            return False
    except (TypeError, ValueError):
        return False
    # options() shows secrets masked: compare the pickled (real) ones
    return _account_real(src) == _account_real(dest)


def _account_real(store) -> dict:
    options = store.__reduce__()[1][2]  # (rebuild, (cls, url, options)): secrets unmasked
    return {k: v for k, v in dict(options).items() if k not in _TRANSFER_ONLY}


# ------------------------------------------------------------------ the raw seam

def _read_raw(src, keys: list[str], decode: bool = False
              ) -> Iterator[tuple[str, bytes | None, str | None]]:
    """(key, stored bytes or None if missing, content encoding) for each key, as the reads
    complete (``raw=True``: the bytes as stored, not decoded); with ``decode`` the decoded
    value and None. Raises BatchError at the end for keys that failed otherwise."""
    if decode:
        for key, value in src.iter_get(keys):
            yield key, value, None
        return
    for key, got in src.iter_get(keys, raw=True):
        if got is None:
            yield key, None, None
        else:
            yield key, got[0], got[1]


def _read_ranges_into(src, key: str, size: int, fds: list[int], progress, stop: threading.Event
                      ) -> tuple[bool, str | None]:
    """Read one large object's stored bytes as ranges of RANGE_PART, STREAM_RANGES at a
    time, each written at its offset into the files ``fds`` (os.pwrite) by a helper thread
    while the next ranges are read. ``progress(0, nbytes)`` as pieces land, if given.

    Returns (False, None) if ``stop`` was set meanwhile, else (True, the object's content
    encoding). KeyError if the object is gone; ProtocolError if its size or encoding
    changed since it was listed; OSError if a file cannot be written."""
    from ._core import Store
    # the last range asks for one byte more: an object that grew since it was listed shows
    spans = [(off, min(off + RANGE_PART, size + 1)) for off in range(0, size, RANGE_PART)]
    encodings: set = set()
    got = 0

    def changed(detail: str) -> ProtocolError:
        return ProtocolError(f"{key}: {detail} (changed while it was copied)",
                             operation="get", key=key, url=src.url)

    def write(pieces: list) -> None:  # (offset, bytes-like: a Blob)
        for off, piece in pieces:
            for fd in fds:
                n = os.pwrite(fd, piece, off)  # releases the GIL
                while n < len(piece):
                    n += os.pwrite(fd, memoryview(piece)[n:], off + n)
            if progress:
                progress(0, len(piece) * len(fds))

    with concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="cloudfiles-transfer-pwrite") as pool:
        writing = None  # the write of the ranges before
        for i in range(0, len(spans), STREAM_RANGES):
            if stop.is_set():
                break
            group = spans[i:i + STREAM_RANGES]
            # Blobs: their buffers go back to the engine's pool once written, so the next
            # ranges land in warm memory (fresh pages cost more than the reads)
            parts = Store.get_ranges(src, [(key, a, b) for a, b in group], raw=True, _blobs=True)
            if any(p is None for p in parts):
                raise KeyError(key)
            for (a, b), (piece, enc) in zip(group, parts):
                got += len(piece)
                encodings.add(enc)
                if len(piece) != min(b, size) - a:
                    raise changed(f"{len(piece)} bytes at offset {a} where the listing said "
                                  f"{size} in all")
            if len(encodings) > 1:
                raise changed(f"encoded as {sorted(map(str, encodings))}")
            if writing is not None:
                writing.result()
            writing = pool.submit(write, [(a, piece) for (a, _b), (piece, _e) in zip(group, parts)])
            parts = None
        if writing is not None:
            writing.result()
    if stop.is_set():
        return False, None
    if got != size:  # every range was its size: only if the ranges missed some
        raise changed(f"{got} bytes read where the listing said {size}")
    return True, encodings.pop() if encodings else None


def _stream_to_files(src, dest, key: str, dest_keys: list[str], size: int, progress,
                     stop: threading.Event, attrs: dict | None = None) -> bool:
    """Copy one large object of a remote store into the file:// store ``dest`` as
    ``dest_keys`` without holding it: its ranges written into new files (``_new_file``) as
    they arrive (``_read_ranges_into``), then the files put in place with the object's
    encoding. ``progress(0, nbytes)`` as pieces land, ``progress(n, 0)`` at the end;
    ``attrs`` is ignored (a file keeps only its bytes).

    Returns False if ``stop`` was set meanwhile (nothing written). KeyError if the object is
    gone; ProtocolError if its size or encoding changed since it was listed (nothing is
    left of the files then, nor after any other failure)."""
    files: list = []
    try:
        files = [dest._new_file(d) for d in dest_keys]
        try:
            done, encoding = _read_ranges_into(src, key, size, [f.fileno() for f in files],
                                               progress, stop)
        except OSError as e:
            raise StorageIOError(f"put {files[0].key!r} failed (I/O error): cannot write: "
                                 f"{e.strerror} [{dest.url}/{files[0].key}]",
                                 operation="put", key=files[0].key, url=dest.url) from e
        if not done:
            for f in files:
                f.discard()
            return False
        for f in files:
            f.commit(encoding)
    except BaseException:
        for f in files:
            f.discard()
        raise
    if progress:
        progress(len(files), 0)
    return True


def _spool_and_send(src, dest, key: str, dest_keys: list[str], size: int, progress,
                    stop: threading.Event, attrs: dict | None = None) -> bool:
    """Copy one large object between two stores, neither of them file://, without holding
    it: its ranges go into an unnamed temporary file (``tempfile.TemporaryFile``, in
    TMPDIR: gone with the process whatever happens) as they arrive, which is then the value
    written, sent part by part from there (as ``_send_from_file``), with ``attrs`` (the
    setitems keywords of its attributes; compress= to re-encode it). ``progress(n, nbytes)`` once written.

    Returns False if ``stop`` was set meanwhile (nothing written). KeyError if the object is
    gone; ProtocolError if it changed since it was listed; StorageIOError if the temporary
    file cannot be written (a full TMPDIR)."""
    def spool_failed(e: OSError) -> StorageIOError:
        return StorageIOError(f"transfer of {key!r} failed (I/O error): cannot write its "
                              f"temporary copy in {tempfile.gettempdir()}: {e.strerror}",
                              operation="transfer", key=key, url=src.url)

    try:
        spool = tempfile.TemporaryFile(prefix="cloudfiles-transfer-")
    except OSError as e:
        raise spool_failed(e) from e
    with spool:
        try:
            done, encoding = _read_ranges_into(src, key, size, [spool.fileno()], None, stop)
        except OSError as e:
            raise spool_failed(e) from e
        if not done or stop.is_set():
            return False
        dest.setitems([(d, (spool, encoding)) for d in dest_keys], raw=True, **(attrs or {}))
    if progress:
        progress(len(dest_keys), size * len(dest_keys))
    return True


def _send_from_file(src, dest, key: str, dest_keys: list[str], size: int, progress,
                    stop: threading.Event, attrs: dict | None = None) -> bool:
    """Write one large object of the file:// store ``src`` to ``dest`` as ``dest_keys``
    from its file, as stored (its encoding kept): a file value, which the engine reads as
    it hashes and sends each part, so the object is never held; with ``attrs`` (a file://
    source has no attributes; compress= to re-encode it). ``progress(n, nbytes)`` once
    written (the bytes of an upload in flight are the destination's upload_bytes_held).

    Returns False if ``stop`` was set before it started. KeyError if the object is gone."""
    if stop.is_set():
        return False
    file, encoding = src._open_stored(key)
    with file:
        sent = os.fstat(file.fileno()).st_size  # what the value is: the file as it is now
        dest.setitems([(d, (file, encoding)) for d in dest_keys], raw=True, **(attrs or {}))
    if progress:
        progress(len(dest_keys), sent * len(dest_keys))
    return True


def _write_raw(dest, items: list[tuple[str, bytes, str | None]], reencode=None,
               attrs: dict | None = None) -> None:
    """Store each (key, bytes, content encoding) as it is (the bytes already encoded as
    the encoding says; ``raw=True``), or, with ``reencode``, the (decoded) bytes encoded
    anew on the engine's workers: 'gzip', 'br', 'zstd', or False for none; with ``attrs``
    ({key: setitems' attribute keywords}), each with its own attributes. Raises
    BatchError naming the keys that failed, the rest stored."""
    def write(some, kwargs):
        if reencode is None:
            dest.setitems(((key, (value, enc)) for key, value, enc in some), raw=True, **kwargs)
        else:
            dest.setitems(((key, value) for key, value, _enc in some), compress=reencode, **kwargs)

    if not attrs:
        write(items, {})
        return
    # setitems takes attributes per call: one call per distinct set, several at once (each
    # waits with the GIL released), so objects of attributes of their own still go in parallel
    by_attrs: dict = {}
    for item in items:
        kwargs = attrs.get(item[0]) or {}
        by_attrs.setdefault(_attrs_id(kwargs), (kwargs, []))[1].append(item)
    errors: list[BaseException] = []

    def write_group(kwargs, some):
        try:
            write(some, kwargs)
        except BatchError as e:
            errors.extend(e.errors)
        except OptionError as e:  # attributes this destination refuses (a name, a length)
            errors.extend(OptionError(f"{e}", operation="put", key=key, url=dest.url)
                          for key, _v, _enc in some)

    if len(by_attrs) == 1:
        write_group(*next(iter(by_attrs.values())))
    else:
        with concurrent.futures.ThreadPoolExecutor(min(len(by_attrs), 16)) as pool:
            for done in [pool.submit(write_group, kwargs, some) for kwargs, some in by_attrs.values()]:
                done.result()
    if errors:
        raise BatchError(f"setitems: {len(errors)} of the keys failed; first: {errors[0]}",
                         errors=errors, operation="setitems")


def _attrs_id(kwargs: dict) -> tuple:
    """A hashable form of setitems' attribute keywords (metadata is a dict)."""
    return tuple(sorted((k, tuple(sorted(v.items())) if isinstance(v, dict) else v)
                        for k, v in kwargs.items()))


# ------------------------------------------------------------- attributes


def _service(store) -> str:
    return (store.url or "").partition("://")[0]


def _attr_fields(src, dest) -> tuple[str, ...]:
    """The write attributes a streamed copy carries from src to dest: those dest stores and
    src has; () when there are none (a file:// store on either side). The storage class
    only between stores of one service kind: another service names its classes otherwise,
    and its objects get the destination's default."""
    have, take = src.capabilities, dest.capabilities
    if "content_type" not in have or "content_type" not in take:
        return ()
    fields = ["content_type"]
    if "object_attrs" in have and "object_attrs" in take:
        fields += ["cache_control", "content_disposition", "metadata"]
    if "storage_class" in have and "storage_class" in take and _service(src) == _service(dest):
        fields.append("storage_class")
    return tuple(fields)


def _heads(src, keys: list[str]) -> tuple[dict, dict]:
    """({key: ObjectInfo} of the keys found, {key: error} of those whose HEAD failed):
    ``src.heads`` in parallel, a batch that failed for some keys asked again for the rest."""
    failed: dict = {}
    while keys:
        try:
            return src.heads(keys), failed
        except BatchError as e:
            named = {getattr(x, "key", None): x for x in e.errors}
            if not named.keys() & set(keys):  # no key named: each fails with the batch's error
                failed.update((k, CloudFilesError(f"head {k!r}: {e}", operation="head", key=k,
                                                  url=src.url)) for k in keys)
                break
            failed.update((k, x) for k, x in named.items() if k in keys)
            keys = [k for k in keys if k not in failed]
    return {}, failed


class _AttrReader:
    """The attributes of a group's objects, read (``heads``: one HEAD each, in parallel)
    on a helper thread while the caller's thread reads the group's bytes. ``known`` holds
    the ObjectInfo of keys already HEADed (``_sized``): those are not asked again."""

    def __init__(self, src, fields: tuple[str, ...], known: dict):
        self.src = src
        self.fields = fields
        self.known = known
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cloudfiles-transfer-head")

    def start(self, keys: list[str]) -> concurrent.futures.Future:
        have = {k: self.known.pop(k) for k in keys if k in self.known}
        return self.pool.submit(self._read, [k for k in keys if k not in have], have)

    def _read(self, keys: list[str], have: dict) -> tuple[dict, dict]:
        """({key: setitems' attribute keywords} of the keys found, {key: error} of those
        whose HEAD failed)."""
        infos, failed = _heads(self.src, keys)
        infos.update(have)
        return {k: {n: v for n, v in info.write_kwargs().items() if n in self.fields}
                for k, info in infos.items()}, failed

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------------- transfers

def _normalise(src, keys, prefix: str) -> Iterator[tuple[str, str, int]]:
    """(source key, destination key, size or -1) of every object to transfer."""
    if keys is None:
        for key, size in src.entries(prefix):
            yield key, key, size
        return
    if isinstance(keys, (str, bytes)):
        raise TypeError("keys must be an iterable of keys, not a single str (put it in a list)")
    if hasattr(keys, "items"):
        keys = keys.items()
    for item in keys:
        if isinstance(item, str):
            yield item, item, -1
        elif isinstance(item, tuple) and len(item) in (2, 3):
            s, d = item[0], item[1]
            size = item[2] if len(item) == 3 and item[2] is not None else -1
            yield s, d, int(size)
        else:
            raise TypeError(f"keys must be str or (source, destination[, size]) items, not {item!r}")


def _sized(src, items: Iterable[tuple[str, str, int]], batch: int,
           known: dict | None) -> Iterator[tuple[str, str, int]]:
    """The items, those given without a size (-1) with the stored size their HEAD gives
    (``batch`` keys at a time, in parallel): so that a large one is streamed rather than
    held, and the groups are bounded by bytes. Each ObjectInfo goes into ``known`` (for
    the attributes, not asked again). A key whose HEAD failed or found nothing keeps -1:
    its read says why."""
    pending: list[tuple[str, str, int]] = []

    def resolved() -> Iterator[tuple[str, str, int]]:
        unsized = list(dict.fromkeys(s for s, _d, size in pending if size < 0))
        infos, _failed = _heads(src, unsized)
        if known is not None:
            known.update(infos)
        for s, d, size in pending:
            yield s, d, infos[s].size if size < 0 and s in infos else size

    for item in items:
        pending.append(item)
        if len(pending) >= batch:
            yield from resolved()
            pending = []
    yield from resolved()


def _groups(items: Iterable[tuple[str, str, int]], max_bytes: int, max_unknown: int,
            max_count: int = 8192):
    """Lists of items holding at most max_bytes of known sizes, at most max_unknown objects
    of unknown size (-1) and at most max_count objects; an object larger than max_bytes is
    a group of its own."""
    group: list[tuple[str, str, int]] = []
    total = unknown = 0
    for item in items:
        size = item[2]
        if group and (total + max(size, 0) > max_bytes or len(group) >= max_count
                      or (size < 0 and unknown >= max_unknown)):
            yield group
            group, total, unknown = [], 0, 0
        group.append(item)
        total += max(size, 0)
        unknown += size < 0
    if group:
        yield group


def transfer(src, dest, keys=None, prefix: str = "", reencode=None, *, window: int = DEFAULT_WINDOW,
             server_side: bool | None = None, progress=None, attributes: bool = True) -> dict:
    from ._core import Store
    if not isinstance(dest, Store):
        raise TypeError(f"transfer_to needs a CloudFilesStore to write to, not {type(dest).__name__}")
    if reencode is not None and reencode is not False and reencode not in ("gzip", "br", "zstd"):
        raise ValueError(f"reencode must be None (keep as stored), 'gzip', 'br', 'zstd' or False, "
                         f"not {reencode!r}")
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive number of bytes, not {window!r}")
    items = _normalise(src, keys, prefix)
    if server_side is None:
        # a copy on the server keeps the stored bytes: not when reencode asks for others
        server_side = reencode is None and server_side_possible(src, dest)
    elif server_side and (reencode is not None or not server_side_possible(src, dest)):
        raise ValueError(f"{dest.url} cannot copy from {src.url} on the server"
                         + (" and reencode" if reencode is not None else ""))
    if server_side:
        return _server_side(src, dest, items, progress)
    return _streamed(src, dest, items, window, progress, reencode,
                     _attr_fields(src, dest) if attributes else ())


def _server_side(src, dest, items, progress) -> dict:
    done = {"objects": 0, "bytes": 0, "server_side": 0, "failed": []}
    errors = []
    # groups only to report progress as they go; the engine keeps its window full within one
    for group in _groups(items, 1 << 62, 4096, 4096):
        failed = set()
        try:
            dest._copy_from(src, [(s, d, size) for s, d, size in group])
        except BatchError as e:
            errors.extend(e.errors)
            failed = {getattr(x, "key", None) if not isinstance(x, KeyError) else x.args[0]
                      for x in e.errors}
        ok = [(s, size) for s, _d, size in group if s not in failed]
        done["objects"] += len(ok)
        done["server_side"] += len(ok)
        done["bytes"] += sum(max(size, 0) for _s, size in ok)
        done["failed"].extend(s for s, _d, _size in group if s in failed)
        if progress:
            progress(len(ok), sum(max(size, 0) for _s, size in ok))
    return _finish(done, errors, src, dest)


def _streamed(src, dest, items, window: int, progress, reencode=None, attr_fields=()) -> dict:
    done = {"objects": 0, "bytes": 0, "server_side": 0, "failed": []}
    errors: list[BaseException] = []
    half = max(1, window // 2)
    # objects of unknown size (keys given without sizes) per group: the engine's window
    unknown = max(16, 2 * int(src.options.get("concurrency") or 64))
    # a large object is never held (_stream_one): from a remote store (where ranges speed
    # it up: each connection has its own pace) into a file:// one, its ranges go into the
    # new file; to another store, or re-encoded, through a temporary file; from a file://
    # store, its file is sent. Re-encoded, the engine transcodes the file as a stream as it
    # writes it (raw=True with compress=). From a mem:// store it is read whole in its group.
    ranged = not src.url.startswith(_LOCAL_SCHEMES)
    unheld_by = None
    if ranged and reencode is None and dest.url.startswith("file://"):
        unheld_by = _stream_to_files
    elif ranged:
        unheld_by = _spool_and_send
    elif src.url.startswith("file://"):
        unheld_by = _send_from_file
    streamed = {"objects": 0, "bytes": 0, "failed": [], "errors": []}  # counted on this thread
    groups: queue.Queue = queue.Queue()     # read, waiting to be written
    slots = threading.Semaphore(2)           # groups held: one being written, one being read
    stop = threading.Event()                 # the caller gave up: write nothing more
    writer_error: list[BaseException] = []

    def write_all():
        # the writes run here, the reads on the caller's thread, where Ctrl-C reaches the
        # engine's batch and gives its reads up at once
        try:
            while True:
                g = groups.get()
                if g is None or stop.is_set():
                    return
                got, missing, errs, attrs = g
                g = None
                errors.extend(errs)
                done["failed"].extend(getattr(e, "key", None) for e in errs)
                for key in missing:
                    errors.append(KeyError(key))
                    done["failed"].append(key)
                failed_dest = set()
                try:
                    _write_raw(dest, [(d, v, enc) for d, v, enc, _s in got], reencode, attrs)
                except BatchError as e:
                    errors.extend(e.errors)
                    failed_dest = {getattr(x, "key", None) for x in e.errors}
                n = nbytes = 0
                for d, v, _enc, key in got:
                    if d in failed_dest:
                        done["failed"].append(key)
                    else:
                        n += 1
                        nbytes += len(v)
                got = None
                slots.release()
                done["objects"] += n
                done["bytes"] += nbytes
                if progress:
                    progress(n, nbytes)
        except BaseException as e:  # noqa: BLE001 - re-raised on the caller's thread
            writer_error.append(e)
            stop.set()

    known: dict = {}  # the ObjectInfo of keys _sized HEADed, until their group is read
    if unheld_by or attr_fields:  # the HEADs would be made anyway, or a large one held
        items = _sized(src, items, 1024, known if attr_fields else None)
    writer = threading.Thread(target=write_all, name="cloudfiles-transfer-write", daemon=True)
    writer.start()
    attr_reader = _AttrReader(src, attr_fields, known) if attr_fields else None
    try:
        for group in _groups(items, half, unknown):
            while not slots.acquire(timeout=0.2):
                if stop.is_set():
                    break
            if stop.is_set():
                break
            dests: dict = {}  # a source key may go to several destination keys
            unheld = {}  # large objects never held: each by itself, after the group
            for s, d, size in group:
                dests.setdefault(s, []).append(d)
                if size >= LARGE_OBJECT and unheld_by:
                    unheld[s] = size
            got, missing, errs = [], [], []
            heads = attr_reader.start(list(dests)) if attr_reader else None
            try:
                for key, value, enc in _read_raw(src, [k for k in dests if k not in unheld],
                                                 decode=reencode is not None):
                    if value is None:
                        missing.append(key)
                    else:
                        got.extend((d, value, enc, key) for d in dests[key])
            except BatchError as e:
                errs.extend(e.errors)
            # a failed HEAD of an unheld object fails it here (_with_attrs adds the error)
            attrs = _with_attrs(heads, got, missing, errs) if heads else None
            by_source, head_failed = heads.result() if heads else ({}, {})
            groups.put((got, missing, errs, attrs))
            got = None
            for key, size in unheld.items():  # while the writer writes the group
                if key not in head_failed:
                    kwargs = dict(by_source.get(key) or {})
                    if reencode is not None:
                        kwargs["compress"] = reencode
                    _stream_one(unheld_by, src, dest, key, dests[key], size, progress, stop,
                                streamed, kwargs)
    except BaseException:
        stop.set()  # the group being written completes; the queued ones are dropped
        raise
    finally:
        groups.put(None)
        writer.join()
        if attr_reader:
            attr_reader.close()
    if writer_error:
        raise writer_error[0]
    done["objects"] += streamed["objects"]
    done["bytes"] += streamed["bytes"]
    done["failed"].extend(streamed["failed"])
    errors.extend(streamed["errors"])
    return _finish(done, errors, src, dest)


def _with_attrs(heads: concurrent.futures.Future, got: list, missing: list, errs: list) -> dict:
    """{destination key: attribute keywords} of a group read, from its HEADs; an object
    whose HEAD failed is taken out of ``got`` and its error added to ``errs`` (unless its
    read failed too). One found by its read and not by its HEAD (put there in between) is
    written with the destination's defaults."""
    by_source, head_failed = heads.result()
    if head_failed:
        read_failed = set(missing) | {getattr(e, "key", None) for e in errs}
        errs.extend(e for k, e in head_failed.items() if k not in read_failed)
        got[:] = [g for g in got if g[3] not in head_failed]
    return {d: by_source[s] for d, _v, _enc, s in got if s in by_source}


def _stream_one(stream, src, dest, key: str, dest_keys: list[str], size: int, progress,
                stop: threading.Event, streamed: dict, attrs: dict | None) -> None:
    """One large object of a transfer, never held (``stream``: _stream_to_files,
    _spool_and_send or _send_from_file), written with ``attrs`` (setitems keywords: its
    attributes, and compress= when it is re-encoded), its outcome counted in
    ``streamed`` (a failure there, as the writer thread counts those of the groups)."""
    try:
        if stream(src, dest, key, dest_keys, size, progress, stop, attrs):
            streamed["objects"] += len(dest_keys)
            streamed["bytes"] += size * len(dest_keys)
        return
    except KeyError:
        error: BaseException = KeyError(key)
    except BatchError as e:
        error = e.errors[0] if e.errors else e  # one error for the key
    except CloudFilesError as e:
        error = e
    streamed["errors"].append(error)
    streamed["failed"].append(key)


def _finish(done: dict, errors: list, src, dest) -> dict:
    if errors:
        names = ", ".join(repr(k) for k in done["failed"][:10])
        more = f" and {len(done['failed']) - 10} more" if len(done["failed"]) > 10 else ""
        err = BatchError(
            f"transfer from {src.url} to {dest.url}: {len(done['failed'])} objects failed "
            f"({names}{more}); {done['objects']} transferred",
            errors=errors, operation="transfer")
        err.summary = {k: v for k, v in done.items() if k != "failed"}
        err.failed = list(done["failed"])
        raise err
    return {k: v for k, v in done.items() if k != "failed"}
