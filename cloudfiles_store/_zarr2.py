"""zarr 2 support: make ``CloudFilesStore`` a zarr 2 ``BaseStore``.

zarr 2 wraps every store that is not an instance of ``zarr.storage.BaseStore`` in a
``KVStore``, whose ``getitems`` reads one key at a time. Registering ``CloudFilesStore`` as a
virtual subclass of ``BaseStore`` keeps zarr on the mapping's own parallel ``getitems``,
``setitems``, ``delitems``, ``listdir``, ``rmdir`` and ``getsize``.

Nothing here imports zarr: ``install()`` registers at once when zarr 2 is already imported,
and otherwise arranges to register right after ``zarr.storage`` is first imported.

Under zarr 3, whose stores are ``cloudfiles_store.ZarrStore``, the mapping is no store:
zarr's conversion of a ``store=`` argument is wrapped so that a ``CloudFilesStore`` given
to ``zarr.open`` and the like raises a TypeError naming ``ZarrStore``, rather than zarr's
generic "Unsupported type for store_like".
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import sys
import threading

_lock = threading.Lock()
_registered = False


def register() -> bool:
    """Register CloudFilesStore with zarr 2's BaseStore; True if zarr 2 is the zarr imported."""
    global _registered
    storage = sys.modules.get("zarr.storage")
    # zarr 2's storage has BaseStore (zarr 3's has not); zarr.__version__ may not be set
    # yet when this runs, from inside zarr/__init__.py
    base = getattr(storage, "BaseStore", None)
    if base is None or getattr(base, "_store_version", None) != 2:
        _guard_zarr3()
        return False
    with _lock:
        if _registered:
            return True
        from zarr.meta import Metadata2

        from . import CloudFilesStore

        # what zarr 2 reads from a BaseStore besides the mapping methods
        CloudFilesStore._metadata_class = Metadata2
        CloudFilesStore.rename = base.rename
        base.register(CloudFilesStore)
        _registered = True
    return True


def _guard_zarr3() -> None:
    """zarr 3: a CloudFilesStore given as a store raises a TypeError that names ZarrStore."""
    common = sys.modules.get("zarr.storage._common")
    make_store = getattr(common, "make_store", None)
    if make_store is None or getattr(make_store, "_cloudfiles_guard", False):
        return
    from . import CloudFilesStore

    @functools.wraps(make_store)
    async def guarded(store_like, *args, **kwargs):
        if isinstance(store_like, CloudFilesStore):
            raise TypeError(
                f"zarr 3 does not take a CloudFilesStore (a mapping, zarr 2's kind of store): "
                f"use cloudfiles_store.ZarrStore({store_like.url!r}, **options), the same "
                f"engine as a zarr 3 store")
        return await make_store(store_like, *args, **kwargs)

    guarded._cloudfiles_guard = True
    with _lock:
        if getattr(common.make_store, "_cloudfiles_guard", False):
            return
        common.make_store = guarded


class _AfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """One-shot import hook: run register() once zarr.storage has been executed."""

    def find_spec(self, name, path, target=None):
        if name != "zarr.storage":
            return None
        _remove_hook()
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        spec = module.__spec__
        spec.loader = self._loader
        module.__loader__ = self._loader
        self._loader.exec_module(module)
        try:
            register()
        except Exception:  # never break `import zarr` because of us
            pass


_hook: _AfterImport | None = None


def _remove_hook() -> None:
    global _hook
    with _lock:
        if _hook is not None:
            try:
                sys.meta_path.remove(_hook)
            except ValueError:
                pass
            _hook = None


def install() -> None:
    """Register now if zarr 2 is imported, else when zarr.storage is imported."""
    global _hook
    if "zarr.storage" in sys.modules:
        register()
        return
    with _lock:
        if _hook is None:
            _hook = _AfterImport()
            sys.meta_path.insert(0, _hook)
