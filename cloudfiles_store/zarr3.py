"""zarr 3 store over the C engine: ``ZarrStore(url, *, read_only=False, **options)``.

Every coroutine submits its operation to the engine through a ``_core.Completions`` queue
owned by the running event loop and awaits a future that the engine completes: no thread
per call, nothing blocking in ``async def``, and as many operations in flight as zarr
awaits at once (the store's ``concurrency`` option bounds the transfers).

The synchronous methods (``get_sync``, ``set_sync``, ``delete_sync``) use the engine's
blocking calls, which wait with the GIL released.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import AsyncIterator, Iterable
from typing import Any

from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from . import _core, _ranges

__all__ = ["ZarrStore"]

# get_partial_values: ranges of one object closer than this are read as one request, as
# long as the merged request stays below COALESCE_MAX (_ranges.py, shared with the mapping)
COALESCE_GAP = _ranges.COALESCE_GAP
COALESCE_MAX = _ranges.COALESCE_MAX
# _get_many, delete_dir: requests submitted ahead of the ones completed.
WINDOW = 4096


# ----------------------------------------------------------------------------- loops

_completions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_completions_lock = threading.Lock()


def _forget_after_fork() -> None:
    # the child's loops are not the parent's; the parent's queues belong to a dead engine
    global _completions, _completions_lock
    _completions = weakref.WeakKeyDictionary()
    _completions_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _queue(loop: asyncio.AbstractEventLoop) -> _core.Completions:
    """The Completions queue of ``loop``, made and registered with it on first use."""
    q = _completions.get(loop)
    if q is not None:
        return q
    with _completions_lock:
        q = _completions.get(loop)
        if q is None:
            # drop the queues of closed loops (their selectors, and so the readers, are gone)
            for old in [lp for lp in _completions if lp.is_closed()]:
                stale = _completions.pop(old)
                try:
                    stale.drain()  # free ops that finished after their loop closed
                except Exception:
                    pass  # their futures' loop is closed: nobody is waiting
            q = _core.Completions()
            loop.add_reader(q.fileno(), q.drain)
            _completions[loop] = q
    return q


# The kinds of op, each a method of Completions: (queue, store, key, future, *args).
_GET = _core.Completions.get              # (start, end) -> bytes, None if missing
_HEAD = _core.Completions.head            # -> size, None if missing
_DELETE = _core.Completions.delete        # -> None, missing keys too
_DELETE_MANY = _core.Completions.delete_many  # keys for key: one request for them all
_LIST = _core.Completions.list            # prefix for key -> [(key, size, False)] below
_LIST_DIR = _core.Completions.list_dir    # prefix for key -> [(key, size, is_dir)] one level
_RMDIR = _core.Completions.rmdir          # prefix for key: what is left of its directories


def _submit(kind, core: _core.Store, key: Any, *args: Any) -> asyncio.Future:
    """Submit an op of ``kind`` (_GET, _HEAD...) on the running loop; return its future."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    kind(_queue(loop), core, key, fut, *args)
    return fut


def _put(core: _core.Store, key: str, value: Any, if_absent: bool = False) -> asyncio.Future:
    """Submit a put (Completions.put takes the value before the future)."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    _queue(loop).put(core, key, value, fut, if_absent)
    return fut


def _delete_keys(core: _core.Store, keys: list[str]) -> list[asyncio.Future]:
    """Delete ``keys`` (missing ones too): as many a request as the backend takes (S3
    DeleteObjects, a GCS batch), else a request per key. Returns the futures."""
    step = core.delete_many_max
    if step > 1:
        return [_submit(_DELETE_MANY, core, keys[n:n + step]) for n in range(0, len(keys), step)]
    return [_submit(_DELETE, core, k) for k in keys]


# ---------------------------------------------------------------------- byte ranges

def _range_args(byte_range: ByteRequest | None) -> tuple[int | None, int | None]:
    """(start, end) for the engine: end None = to the end, start < 0 = a suffix."""
    if byte_range is None:
        return None, None
    if isinstance(byte_range, RangeByteRequest):
        start, end = byte_range.start, byte_range.end
        if start < 0 or end < 0:
            raise ValueError(f"negative offsets in {byte_range}")
        return start, max(start, end)  # an empty or inverted range reads nothing
    if isinstance(byte_range, OffsetByteRequest):
        if byte_range.offset < 0:
            raise ValueError(f"negative offset in {byte_range}")
        return byte_range.offset, None
    if isinstance(byte_range, SuffixByteRequest):
        if byte_range.suffix < 0:
            raise ValueError(f"negative suffix in {byte_range}")
        if byte_range.suffix == 0:
            return 0, 0  # nothing (the engine reads "-0" as the whole object)
        return -byte_range.suffix, None
    raise TypeError(f"Unexpected byte_range, got {byte_range}.")


def _dir_prefix(prefix: str) -> str:
    """'' stays ''; 'a' and 'a/' become 'a/'."""
    if prefix == "" or prefix.endswith("/"):
        return prefix
    return prefix + "/"


# ---------------------------------------------------------------------------- store

class ZarrStore(Store):
    """A zarr 3 store over S3, GCS, HTTP(S), local files or memory.

    ``ZarrStore(url, *, read_only=False, **options)`` takes the URLs and options of
    :class:`cloudfiles_store.CloudFilesStore` (``concurrency``, ``retries``, credentials...).
    It pickles as its URL and options, so dask workers rebuild it on their side.
    """

    supports_writes = True
    supports_deletes = True
    supports_listing = True

    def __init__(self, url: str, *, read_only: bool = False, **options: Any) -> None:
        super().__init__(read_only=read_only)
        if isinstance(url, os.PathLike):
            url = os.fspath(url)
        self._core = _core.Store(url, **options)
        self._url = url
        self._options = options
        # where the backend cannot create-if-absent atomically (a plain HTTP server such as
        # nginx ignores If-None-Match on PUT), set_if_not_exists checks first
        self._atomic_if_absent = "atomic_if_absent" in self._core.capabilities

    # -- identity -------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The store's URL, without credentials."""
        return self._core.url

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ZarrStore)
            and type(self) is type(other)
            and self._core == other._core
            and self.read_only == other.read_only
        )

    __hash__ = None  # mutable identity, like zarr's own stores

    def __repr__(self) -> str:
        inner = repr(self._core)  # "Store('url', option=..., secret='***')"
        inner = inner[inner.index("(") + 1:-1]
        return f"{type(self).__name__}({inner}, read_only={self.read_only})"

    def __str__(self) -> str:
        return self.url

    def __reduce__(self):
        return (_rebuild, (type(self), self._url, self._options, self.read_only))

    def with_read_only(self, read_only: bool = False) -> ZarrStore:
        return type(self)(self._url, read_only=read_only, **self._options)

    # -- reads ----------------------------------------------------------------------

    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        if prototype is None:
            prototype = default_buffer_prototype()
        start, end = _range_args(byte_range)
        data = await _submit(_GET, self._core, key, start, end)
        if data is None:
            return None
        return prototype.buffer.from_bytes(data)

    async def get_partial_values(
        self,
        prototype: BufferPrototype,
        key_ranges: Iterable[tuple[str, ByteRequest | None]],
    ) -> list[Buffer | None]:
        """Read many ranges; ranges of one object closer than COALESCE_GAP bytes are read
        as one request and sliced, and a whole-object read serves every range of its key."""
        key_ranges = list(key_ranges)
        out: list[Buffer | None] = [None] * len(key_ranges)
        if not key_ranges:
            return out
        # validated before anything is submitted; the plan is the mapping's (_ranges.py)
        ranges = [(key, *_range_args(byte_range)) for key, byte_range in key_ranges]
        requests, members = _ranges.plan(ranges)
        futures = [_submit(_GET, self._core, key, s, e) for key, s, e in requests]
        results = await asyncio.gather(*futures)
        from_buffer = prototype.buffer.from_bytes
        for data, served in zip(results, members):
            if data is None:
                continue
            view = data if len(served) == 1 and served[0][1] is _ranges.AS_IS else memoryview(data)
            for i, how in served:
                out[i] = from_buffer(_ranges.cut(view, how))
        return out

    async def _get_many(
        self, requests: Iterable[tuple[str, BufferPrototype, ByteRequest | None]]
    ):
        """Every get in flight at once (within WINDOW); yields (key, buffer) as they finish."""
        done: asyncio.Queue = asyncio.Queue()
        pending = 0

        def on_done(key, prototype, fut):
            done.put_nowait((key, prototype, fut))

        it = iter(requests)
        exhausted = False
        while True:
            while not exhausted and pending < WINDOW:
                try:
                    key, prototype, byte_range = next(it)
                except StopIteration:
                    exhausted = True
                    break
                if prototype is None:
                    prototype = default_buffer_prototype()
                fut = _submit(_GET, self._core, key, *_range_args(byte_range))
                fut.add_done_callback(lambda f, k=key, p=prototype: on_done(k, p, f))
                pending += 1
            if pending == 0:
                return
            key, prototype, fut = await done.get()
            pending -= 1
            data = fut.result()
            yield key, (None if data is None else prototype.buffer.from_bytes(data))

    async def exists(self, key: str) -> bool:
        return await _submit(_HEAD, self._core, key) is not None

    async def getsize(self, key: str) -> int:
        size = await _submit(_HEAD, self._core, key)
        if size is None:
            raise FileNotFoundError(key)
        return size

    async def getsize_prefix(self, prefix: str) -> int:
        entries = await _submit(_LIST, self._core, _dir_prefix(prefix))
        total = 0
        unknown = []
        for key, size, _ in entries:
            if size is None or size < 0:
                unknown.append(key)
            else:
                total += size
        if unknown:
            sizes = await asyncio.gather(*(_submit(_HEAD, self._core, k) for k in unknown))
            total += sum(s for s in sizes if s is not None)
        return total

    # -- writes ---------------------------------------------------------------------

    @staticmethod
    def _payload(value: Buffer) -> Any:
        if not isinstance(value, Buffer):
            raise TypeError(
                f"ZarrStore.set(): `value` must be a Buffer instance. "
                f"Got an instance of {type(value)} instead."
            )
        return value.as_buffer_like()

    async def set(self, key: str, value: Buffer) -> None:
        self._check_writable()
        await _put(self._core, key, self._payload(value))

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        self._check_writable()
        payload = self._payload(value)
        if not self._atomic_if_absent and await _submit(_HEAD, self._core, key) is not None:
            return
        await _put(self._core, key, payload, if_absent=True)

    async def delete(self, key: str) -> None:
        self._check_writable()
        await _submit(_DELETE, self._core, key)

    async def delete_dir(self, prefix: str) -> None:
        """Delete every key below ``prefix``: as many keys a request as the backend takes
        (S3 DeleteObjects: 1,000), like ``CloudFilesStore.delitems``."""
        self._check_writable()
        prefix = _dir_prefix(prefix)
        keys = [k for k, _, _ in await _submit(_LIST, self._core, prefix)]
        step = WINDOW * max(1, self._core.delete_many_max)  # WINDOW requests at a time
        for n in range(0, len(keys), step):
            await asyncio.gather(*_delete_keys(self._core, keys[n:n + step]))
        # what is left of the directories (local files, WebDAV collections)
        await _submit(_RMDIR, self._core, prefix)

    async def clear(self) -> None:
        await self.delete_dir("")

    # -- listing --------------------------------------------------------------------

    async def list(self) -> AsyncIterator[str]:
        for key, _, _ in await _submit(_LIST, self._core, ""):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for key, _, _ in await _submit(_LIST, self._core, prefix):
            yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        prefix = _dir_prefix(prefix)
        names = {key[len(prefix):].rstrip("/") for key, _, _ in
                 await _submit(_LIST_DIR, self._core, prefix)}
        names.discard("")
        for name in sorted(names):
            yield name

    async def is_empty(self, prefix: str) -> bool:
        prefix = _dir_prefix(prefix)
        # one level first: a file there settles it; only directories may be empty leftovers
        entries = await _submit(_LIST_DIR, self._core, prefix)
        if not entries:
            return True
        if any(not is_dir for _, _, is_dir in entries):
            return False
        return not await _submit(_LIST, self._core, prefix)

    # -- synchronous (zarr's sync codec pipeline) ------------------------------------

    def get_sync(
        self,
        key: str,
        *,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        if prototype is None:
            prototype = default_buffer_prototype()
        start, end = _range_args(byte_range)
        if start is None:
            try:
                data = self._core[key]
            except KeyError:
                return None
        else:
            data = self._core.get_ranges([(key, start, end)])[0]
        if data is None:
            return None
        return prototype.buffer.from_bytes(data)

    def set_sync(self, key: str, value: Buffer) -> None:
        self._check_writable()
        self._core[key] = self._payload(value)

    def delete_sync(self, key: str) -> None:
        self._check_writable()
        self._core.delitems([key])


def _rebuild(cls, url, options, read_only):
    return cls(url, read_only=read_only, **options)
