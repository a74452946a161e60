"""cloudfiles_store: parallel object storage for zarr, from a C engine.

``CloudFilesStore(url, **options)`` is a mutable mapping of keys to bytes over S3, GCS,
HTTP(S), local files or memory; batches (``getitems``, ``setitems``, ``delitems``) run in
parallel with the GIL released.
"""

import mimetypes
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from . import errors
from ._core import Store as _Store
from ._core import _set_mime_types, engine_stats
from ._version import __version__
from .errors import *  # noqa: F401,F403
from .info import ObjectInfo

# Content types of writes are guessed from the key's extension with the standard library's
# table (as gsutil and CloudFiles do), handed to C once.
mimetypes.init()
_set_mime_types(dict(mimetypes.types_map), list(mimetypes.encodings_map))


class CloudFilesStore(_Store, MutableMapping[str, bytes]):
    """A mapping of str keys to bytes at ``url``; see the README for URLs and options.

    Transfer options: ``concurrency`` (requests in flight, default 64), ``retries``
    (attempts in all, default 6), ``retry_base`` and ``retry_cap`` (seconds of the
    full-jitter backoff window), ``connect_timeout`` (seconds), ``stall_timeout`` (seconds
    without a byte before a transfer is retried). HTTP(S): ``ca_bundle``, ``verify``,
    ``bearer_token``, ``username``/``password``. Compression: ``compress`` ("gzip", "br",
    "zstd": the default for writes), ``compress_level``, ``compress_keys``; per call
    ``setitems(..., compress=, level=)`` and ``put(key, value, compress=, level=)``; reads
    decode by the stored Content-Encoding; ``get_raw``/``getitems(raw=True)`` return
    (stored bytes, encoding), ``setitems(..., raw=True, content_encoding=)`` stores them.
    """

    __slots__ = ()

    # zarr 2's store protocol: this mapping is readable, writeable, listable and erasable
    _store_version = 2

    def is_readable(self):
        return True

    def is_writeable(self):
        return True

    def is_listable(self):
        return True

    def is_erasable(self):
        return True

    def head(self, key: str) -> ObjectInfo:
        """The object's size and attributes (:class:`ObjectInfo`) from one HEAD request;
        ``KeyError`` if it is missing."""
        return ObjectInfo._from_core(key, self._head(key))

    def heads(self, keys: "Iterable[str]") -> "dict[str, ObjectInfo]":
        """``{key: ObjectInfo}`` of the keys present, HEAD requests in parallel; missing
        keys are left out (as ``getitems`` does)."""
        return {k: ObjectInfo._from_core(k, d) for k, d in self._heads(keys).items()}

    def exists(self, keys: "Iterable[str]") -> "dict[str, bool]":
        """``{key: bool}`` for every key given, HEAD requests in parallel."""
        keys = list(keys)
        found = self._heads(keys)
        return {k: k in found for k in keys}

    def get_ranges(self, ranges: "Iterable[tuple[str, int, int | None]]", *,
                   raw: bool = False) -> "list[Any]":
        """get_ranges(iterable of (key, start, end)) -> list of bytes (None for a missing
        key). Ranges of one object less than 1 MiB apart are read as one request and
        sliced (up to 64 MiB a request); a whole-object read serves every range of its key.
        A range of an encoded object is of its decoded value (the object is read whole);
        raw=True: ranges of the stored bytes, each a (bytes, encoding) pair."""
        from ._ranges import get_ranges
        return get_ranges(_Store.get_ranges, self, ranges, raw)

    def transfer_to(self, dest: "_Store", keys: "Any" = None, prefix: str = "",
                    reencode: "str | bool | None" = None, *, window: "int | None" = None,
                    server_side: "bool | None" = None,
                    progress: "Callable[[int, int], Any] | None" = None,
                    attributes: bool = True) -> "dict[str, int]":
        """Copy objects of this store to ``dest`` (any backend to any backend).

        ``keys``: None for every key starting with ``prefix``; else keys (the same key in
        ``dest``), ``(source, destination[, size])`` items or a ``{source: destination}``
        mapping. On the server when ``dest`` can read this store there (same service,
        endpoint and credentials: S3 CopyObject, UploadPartCopy from 5 GiB, GCS rewrite);
        otherwise streamed, many objects in flight, holding at most ``window`` bytes
        (default 256 MiB; an object of 64 MiB or more, listed and kept as stored, is not
        held: it goes through its file or a temporary one). Objects keep
        their bytes as stored (and Content-Encoding) unless ``reencode`` asks for 'gzip', 'br',
        'zstd' or False (none), and their attributes: on the server as the service copies
        them; streamed, read with one HEAD per object (alongside the reads) where ``dest``
        stores them and this store has them (not file://): content type, cache control,
        disposition, user metadata, and the storage class between stores of one service
        (S3 to S3, GCS to GCS). ``attributes=False`` skips the HEADs (``dest``'s defaults).
        ``progress(objects, bytes)`` is called as groups complete.

        Returns ``{"objects": n, "bytes": n, "server_side": n}``; raises ``BatchError``
        listing the failed keys (``.failed``, ``.errors``; ``.summary`` for the rest, which
        completed)."""
        from ._transfer import DEFAULT_WINDOW, transfer
        return transfer(self, dest, keys, prefix, reencode,
                        window=DEFAULT_WINDOW if window is None else window,
                        server_side=server_side, progress=progress, attributes=attributes)


def _rebuild(cls, url, options):
    return cls(url, **options)


def __getattr__(name):
    # the zarr 3 store imports zarr: only on first use
    if name == "ZarrStore":
        from .zarr3 import ZarrStore
        return ZarrStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# zarr 2: CloudFilesStore becomes a zarr.storage.BaseStore once zarr 2 is imported
from . import _zarr2  # noqa: E402

_zarr2.install()


__all__ = ["CloudFilesStore", "ObjectInfo", "__version__", "engine_stats", "errors", *errors.__all__]
