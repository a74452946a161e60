"""xarray, dask and dask.distributed through cloudfiles_store.ZarrStore, values compared
exactly: Dataset.to_zarr / open_zarr round trips (several variables, attributes, chunked
dask arrays) on every backend; dask.array.to_zarr / from_zarr; a LocalCluster with two
worker processes writing and reading through the store (pickled to the workers); forked
processes reading through a store the parent already used."""
import concurrent.futures
import multiprocessing
import pickle
import uuid

import numpy as np
import pytest

zarr = pytest.importorskip("zarr", minversion="3.1")
xr = pytest.importorskip("xarray")
da = pytest.importorskip("dask.array")
import dask  # noqa: E402

from cloudfiles_store import ZarrStore  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Consolidated metadata is currently not part")


def _dataset(n_time=48, ny=20, nx=30):
    rng = np.random.default_rng(7)
    time = np.datetime64("2024-01-01T00", "ns") + np.arange(n_time).astype("timedelta64[h]")
    ds = xr.Dataset(
        {
            "temperature": (("time", "y", "x"),
                            rng.standard_normal((n_time, ny, nx)).astype("float32"),
                            {"units": "K", "long_name": "air temperature"}),
            "count": (("time", "y", "x"), rng.integers(0, 1000, (n_time, ny, nx), dtype="int32")),
            "mask": (("y", "x"), rng.random((ny, nx)) > 0.5),
            "elevation": (("y", "x"), rng.standard_normal((ny, nx)) * 100.0, {"units": "m"}),
        },
        coords={
            "time": time,
            "y": np.linspace(-10.0, 10.0, ny),
            "x": np.linspace(0.0, 30.0, nx),
        },
        attrs={"title": "cloudfiles_store round trip", "version": 3, "tags": ["a", "b"]},
    )
    return ds.chunk({"time": 12, "y": 10, "x": 15})


def _fresh_store(backend, **kw):
    return ZarrStore(f"{backend.url}/{uuid.uuid4().hex}", **backend.options, **kw)


def test_xarray_roundtrip(backend):
    ds = _dataset()
    store = _fresh_store(backend)
    ds.to_zarr(store, mode="w", consolidated=True)
    back = xr.open_zarr(ZarrStore(store._url, read_only=True, **backend.options),
                        consolidated=True)
    assert back["temperature"].chunks == ds["temperature"].chunks  # lazily chunked
    assert back["temperature"].encoding["chunks"] == (12, 10, 15)
    xr.testing.assert_identical(back.load(), ds.load())

    # append along time, then read a slice back
    more = _dataset().isel(time=slice(0, 12))
    more = more.assign_coords(time=more.time + np.timedelta64(48, "h"))
    more[["temperature", "count"]].to_zarr(store, append_dim="time")
    back = xr.open_zarr(store)
    assert back.sizes["time"] == 60
    np.testing.assert_array_equal(back["temperature"].isel(time=slice(48, 60)).values,
                                  more["temperature"].values)


def test_xarray_unconsolidated_and_region_write(backend):
    ds = _dataset(n_time=24).compute()
    store = _fresh_store(backend)
    ds.to_zarr(store, mode="w", consolidated=False, compute=True)
    # overwrite one region with new values
    patch = ds.isel(time=slice(12, 24)).copy(deep=True)
    patch["temperature"][...] = -1.5
    patch[["temperature"]].drop_vars(["y", "x"]).to_zarr(
        store, region={"time": slice(12, 24)}, consolidated=False)
    back = xr.open_zarr(store, consolidated=False).load()
    np.testing.assert_array_equal(back["temperature"].values[:12], ds["temperature"].values[:12])
    assert (back["temperature"].values[12:] == -1.5).all()
    xr.testing.assert_identical(back["count"], ds["count"])


def test_dask_array_to_from_zarr(backend):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 200))
    d = da.from_array(x, chunks=(64, 50))
    store = _fresh_store(backend)
    da.to_zarr(d, store, component="arr")
    y = da.from_zarr(store, component="arr")
    assert y.chunks == ((64, 64, 64, 64, 44), (50, 50, 50, 50))
    np.testing.assert_array_equal(y.compute(), x)
    np.testing.assert_array_equal((y[10:250, 5:150] * 2).compute(), x[10:250, 5:150] * 2)
    # threaded scheduler: many gets from several threads at once
    with dask.config.set(scheduler="threads", num_workers=4):
        y = da.from_zarr(store, component="arr")
        assert y.sum().compute() == d.sum().compute()  # same chunks, same reduction order
        np.testing.assert_array_equal(y.compute(), x)


# --------------------------------------------------------------------- processes

@pytest.fixture(scope="module")
def cluster_client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as cluster:
        with distributed.Client(cluster) as client:
            yield client


def _shared_backend(backend):
    if backend.name == "mem":
        pytest.skip("mem:// lives in one process; worker processes need a shared backend")
    return backend


def test_distributed_workers_write_and_read(backend, cluster_client):
    backend = _shared_backend(backend)
    rng = np.random.default_rng(11)
    x = rng.integers(-(2 ** 40), 2 ** 40, (400, 300), dtype="int64")
    store = _fresh_store(backend)
    d = da.from_array(x, chunks=(50, 60))
    da.to_zarr(d, store, component="w", compute=True)  # chunks written on the workers
    workers = cluster_client.run(lambda: __import__("os").getpid())
    assert len(set(workers.values())) == 2

    def queues():  # the completion queues a worker made: it did the I/O itself
        import sys
        m = sys.modules.get("cloudfiles_store.zarr3")
        return 0 if m is None else len(m._completions)

    assert sum(cluster_client.run(queues).values()) >= 1

    y = da.from_zarr(store, component="w")
    np.testing.assert_array_equal(y.compute(), x)  # chunks read on the workers
    np.testing.assert_array_equal((y.T @ y[:, :7]).compute(), x.T @ x[:, :7])

    ds = _dataset(n_time=24)
    s2 = _fresh_store(backend)
    ds.to_zarr(s2, mode="w")
    back = xr.open_zarr(s2)
    assert float(back["temperature"].mean().compute()) == pytest.approx(
        float(ds["temperature"].values.astype("float64").mean()), rel=1e-6)
    xr.testing.assert_identical(back.compute(), ds.compute())


def _read_in_child(blob):
    store, component = pickle.loads(blob)
    a = zarr.open_array(store=store, path=component, mode="r")
    return a[...].tobytes()


def test_forked_children_read_through_a_used_store(backend):
    backend = _shared_backend(backend)
    x = np.arange(5000, dtype="float64").reshape(50, 100)
    store = _fresh_store(backend)
    z = zarr.create_array(store=store, name="f", shape=x.shape, chunks=(10, 10), dtype="f8")
    z[...] = x  # the parent's engine, zarr's loop and our completion queue are all live now
    np.testing.assert_array_equal(z[...], x)
    blob = pickle.dumps((store, "f"))
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        results = list(pool.map(_read_in_child, [blob] * 4))
    for r in results:
        np.testing.assert_array_equal(np.frombuffer(r, dtype="f8").reshape(x.shape), x)
    np.testing.assert_array_equal(z[...], x)  # and the parent still works
