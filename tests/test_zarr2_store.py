"""The mapping as a zarr 2 store: zarr 2.18's own StoreTests on every backend in
conftest.BACKENDS, and proof that zarr 2 uses the mapping's batched getitems/setitems
(not a KVStore wrapper reading one key at a time).

Runs in the zarr-2 environment (a second venv, `bash .ci/zarr2-env` makes it):
    "$(bash .ci/zarr2-env)" -m pytest tests/test_zarr2_store.py
Under zarr 3 this module is skipped (tests/test_zarr3_store.py covers zarr 3).
"""
import pickle
import uuid

import numpy as np
import pytest

import conftest

zarr = pytest.importorskip("zarr")
if not zarr.__version__.startswith("2."):
    pytest.skip(f"zarr {zarr.__version__} here: the zarr 2 suite runs in the venv made by "
                ".ci/zarr2-env", allow_module_level=True)

from zarr.storage import BaseStore, KVStore  # noqa: E402
from zarr.tests.test_storage import (  # noqa: E402
    StoreTests,
    dimension_separator_fixture,  # noqa: F401  (a fixture StoreTests uses)
    skip_if_nested_chunks,
)

from cloudfiles_store import CloudFilesStore  # noqa: E402


def _fresh(backend, **extra):
    """A new empty store below the backend's root (zarr's tests make several per test)."""
    return CloudFilesStore(f"{backend.url}/{uuid.uuid4().hex}", **{**backend.options, **extra})


class TestZarr2StoreTests(StoreTests):
    """zarr.tests.test_storage.StoreTests, once per backend."""

    @pytest.fixture(autouse=True)
    def _use_backend(self, backend):
        self.backend = backend

    def create_store(self, **kwargs):
        # like zarr's own MemoryStore/KVStore tests: a mapping has no dimension_separator
        # of its own (zarr.create(..., dimension_separator="/") works, see below)
        skip_if_nested_chunks(**kwargs)
        kwargs.pop("dimension_separator", None)
        assert not kwargs, kwargs
        return _fresh(self.backend)


@pytest.mark.parametrize("backend", [b for b in ("mem", "file", "s3", "gs")
                                     if b in conftest._selected_backends()], indirect=True)
class TestZarr2StoreTestsCompressed(TestZarr2StoreTests):
    """The same on a store that gzips every write that shrinks (the backends that keep an
    object's encoding: nginx's PUT drops it)."""

    def create_store(self, **kwargs):
        skip_if_nested_chunks(**kwargs)
        kwargs.pop("dimension_separator", None)
        assert not kwargs, kwargs
        return _fresh(self.backend, compress="gzip")


# ------------------------------------------------------------------ batched protocol

class SpyStore(CloudFilesStore):
    """CloudFilesStore recording the batches zarr asks for."""

    __slots__ = ()
    calls = []

    def getitems(self, keys, *, contexts=None):
        keys = list(keys)
        SpyStore.calls.append(("getitems", len(keys)))
        return super().getitems(keys, contexts=contexts)

    def setitems(self, values):
        values = dict(values)
        SpyStore.calls.append(("setitems", len(values)))
        return super().setitems(values)

    def delitems(self, keys):
        keys = list(keys)
        SpyStore.calls.append(("delitems", len(keys)))
        return super().delitems(keys)

    def __getitem__(self, key):
        SpyStore.calls.append(("getitem", key))
        return super().__getitem__(key)


def test_registered_as_base_store():
    assert issubclass(CloudFilesStore, BaseStore)
    s = CloudFilesStore("mem://zarr2-registered")
    assert isinstance(s, BaseStore)
    assert BaseStore._ensure_store(s) is s  # not wrapped in KVStore
    assert not isinstance(BaseStore._ensure_store(s), KVStore)


def test_zarr2_uses_batched_getitems_setitems(backend):
    SpyStore.calls.clear()
    store = SpyStore(f"{backend.url}/{uuid.uuid4().hex}", **backend.options)
    data = np.arange(100 * 80, dtype="int32").reshape(100, 80)
    z = zarr.open_array(store=store, mode="w", shape=data.shape, chunks=(10, 10),
                        dtype="int32", compressor=None)
    assert z.store is store and z.chunk_store is store
    z[...] = data
    sets = [n for op, n in SpyStore.calls if op == "setitems"]
    assert sets and max(sets) == 80, SpyStore.calls  # every chunk in one batch

    SpyStore.calls.clear()
    r = zarr.open_array(store=store, mode="r")
    np.testing.assert_array_equal(r[...], data)
    gets = [n for op, n in SpyStore.calls if op == "getitems"]
    assert gets == [80], SpyStore.calls
    chunk_reads = [k for op, k in SpyStore.calls if op == "getitem" and not k.startswith(".z")]
    assert chunk_reads == []  # no chunk read one at a time

    SpyStore.calls.clear()
    np.testing.assert_array_equal(r[5:35, 15:65], data[5:35, 15:65])
    assert [n for op, n in SpyStore.calls if op == "getitems"] == [4 * 6]


def test_zarr2_group_hierarchy_attrs_nested_and_rmdir(backend):
    store = _fresh(backend)
    root = zarr.group(store=store, overwrite=True)
    root.attrs["title"] = "zarr 2 on cloudfiles_store"
    g = root.create_group("sub")
    a = g.create_dataset("a", data=np.linspace(0, 1, 1000), chunks=(64,))
    b = root.create_dataset("b", shape=(30, 30), chunks=(7, 7), dtype="u2",
                            dimension_separator="/")
    b[...] = np.arange(900, dtype="u2").reshape(30, 30)
    assert "b/0/0" in store  # nested chunk keys
    again = zarr.open_group(store=CloudFilesStore(store.url, **backend.options), mode="r")
    assert again.attrs["title"] == "zarr 2 on cloudfiles_store"
    np.testing.assert_array_equal(again["sub/a"][...], a[...])
    np.testing.assert_array_equal(again["b"][...], b[...])
    assert sorted(again.group_keys()) == ["sub"]
    assert sorted(again.array_keys()) == ["b"]
    assert zarr.storage.getsize(store, "sub/a") > 0
    del root["sub"]  # zarr 2 calls the store's rmdir
    assert "sub/a/.zarray" not in store
    assert sorted(zarr.open_group(store=store, mode="r").group_keys()) == []
    z = pickle.loads(pickle.dumps(again["b"]))
    np.testing.assert_array_equal(z[...], b[...])


def test_zarr2_consolidated_metadata(backend):
    store = _fresh(backend)
    root = zarr.group(store=store)
    for i in range(5):
        root.create_dataset(f"v{i}", data=np.full((20,), i), chunks=(5,))
    if backend.name in ("http", "https"):
        # nginx's autoindex leaves out names starting with "." (hard-wired in nginx), so
        # zarr 2's .zgroup/.zarray/.zattrs can be read but not listed over plain HTTP, and
        # consolidate_metadata (which lists) finds nothing to consolidate.
        assert ".zgroup" in store and "v0/.zarray" in store
        assert not any(k.rsplit("/", 1)[-1].startswith(".") for k in store)
        np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v3"][...],
                                      np.full((20,), 3))
        return
    zarr.consolidate_metadata(store)
    g = zarr.open_consolidated(CloudFilesStore(store.url, **backend.options), mode="r")
    for i in range(5):
        np.testing.assert_array_equal(g[f"v{i}"][...], np.full((20,), i))


@pytest.mark.parametrize("order", ["cloudfiles_store first", "zarr first"])
def test_registration_whatever_the_import_order(order):
    import subprocess
    import sys
    imports = ["import cloudfiles_store", "import zarr"]
    if order == "zarr first":
        imports.reverse()
    code = "; ".join(imports + [
        "from zarr.storage import BaseStore",
        "s = cloudfiles_store.CloudFilesStore('mem://order')",
        "assert isinstance(s, BaseStore)",
        "z = zarr.open_array(store=s, mode='w', shape=(4,), chunks=(2,), dtype='i1')",
        "assert z.store is s",
    ])
    subprocess.run([sys.executable, "-c", code], check=True)
