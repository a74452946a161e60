"""What ``store.head(key)`` says about an object: :class:`ObjectInfo`."""

import datetime
import types
from dataclasses import dataclass, field

__all__ = ["ObjectInfo"]

# the attributes a write can store (put(), setitems(), the store's options of these names)
WRITE_ATTRS = ("content_type", "cache_control", "content_disposition", "storage_class", "metadata")


@dataclass(frozen=True)
class ObjectInfo:
    """An object's size and attributes, from a HEAD request (``store.head``/``heads``).

    ``last_modified`` is an aware UTC ``datetime`` (None if the server gave none);
    ``metadata`` a read-only mapping of the user metadata, names in lower case. Fields the
    server did not give are None. ``write_kwargs()`` gives what ``put()`` takes to write
    another object with the same attributes.
    """

    key: str
    size: int
    etag: "str | None" = None
    last_modified: "datetime.datetime | None" = None
    content_type: "str | None" = None
    content_encoding: "str | None" = None
    cache_control: "str | None" = None
    content_disposition: "str | None" = None
    storage_class: "str | None" = None
    metadata: "types.MappingProxyType" = field(default_factory=lambda: types.MappingProxyType({}),
                                               hash=False)

    @classmethod
    def _from_core(cls, key, d):
        ms = d.get("last_modified_ms")
        when = None
        if ms is not None:
            when = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
        return cls(
            key=key,
            size=d["size"],
            etag=d["etag"],
            last_modified=when,
            content_type=d["content_type"],
            content_encoding=d["content_encoding"],
            cache_control=d["cache_control"],
            content_disposition=d["content_disposition"],
            storage_class=d["storage_class"],
            metadata=types.MappingProxyType(dict(d["metadata"])),
        )

    def write_kwargs(self):
        """The keyword arguments of ``put()``/``setitems()`` that store these attributes
        again (what was not given is left out): for copying an object with its metadata."""
        out = {}
        for name in WRITE_ATTRS:
            value = getattr(self, name)
            if name == "metadata":
                value = dict(value) or None
            if value is not None:
                out[name] = value
        return out

    def to_dict(self):
        """A JSON-ready dict (last_modified in ISO 8601)."""
        return {
            "key": self.key,
            "size": self.size,
            "etag": self.etag,
            "last_modified": self.last_modified.isoformat() if self.last_modified else None,
            "content_type": self.content_type,
            "content_encoding": self.content_encoding,
            "cache_control": self.cache_control,
            "content_disposition": self.content_disposition,
            "storage_class": self.storage_class,
            "metadata": dict(self.metadata),
        }
