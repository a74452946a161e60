"""cloudfiles_store.ZarrStore against zarr 3's own store test suite on every backend in
conftest.BACKENDS, zarr's hypothesis state machine, and tests of our own: requests in
flight at once, no thread per call, a loop that stays responsive, range coalescing, and
zarr arrays (sharded too) written and read through the store."""
import asyncio
import pickle
import threading
import time

import numpy as np
import pytest

zarr = pytest.importorskip("zarr", minversion="3.1")  # zarr 2 runs tests/test_zarr2_store.py

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis.stateful import run_state_machine_as_test  # noqa: E402
from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest  # noqa: E402
from zarr.core.buffer import cpu, default_buffer_prototype  # noqa: E402
from zarr.testing.stateful import ZarrStoreStateMachine  # noqa: E402
from zarr.testing.store import StoreTests  # noqa: E402

import cloudfiles_store  # noqa: E402
from cloudfiles_store import CloudFilesStore, ZarrStore, errors  # noqa: E402
from cloudfiles_store import zarr3 as zarr3_module  # noqa: E402

PROTO = default_buffer_prototype()


async def _collect(aiter):
    return [x async for x in aiter]


# ------------------------------------------------------------------- zarr's StoreTests

class TestZarrStore(StoreTests[ZarrStore, cpu.Buffer]):
    """zarr.testing.store.StoreTests, once per backend (the `backend` fixture's params)."""

    store_cls = ZarrStore
    buffer_cls = cpu.Buffer

    @pytest.fixture
    def store_kwargs(self, backend):
        return {"url": backend.url, **backend.options}

    # set/get bypass the store under test: they go through the mapping
    async def set(self, store, key, value):
        m = CloudFilesStore(store._url, **store._options)
        m[key] = value.to_bytes()

    async def get(self, store, key):
        m = CloudFilesStore(store._url, **store._options)
        return self.buffer_cls.from_bytes(m[key])

    def test_store_repr(self, store):
        r = repr(store)
        assert r.startswith("ZarrStore(")
        assert store.url in r
        assert str(store) == store.url

    def test_store_supports_writes(self, store):
        assert store.supports_writes

    def test_store_supports_listing(self, store):
        assert store.supports_listing

    def test_store_supports_deletes(self, store):
        assert store.supports_deletes

    # ---- beyond zarr's suite, on every backend

    async def test_get_past_end_and_odd_ranges(self, store):
        await store.set("k", cpu.Buffer.from_bytes(b"0123456789"))
        cases = {
            RangeByteRequest(2, 5): b"234",
            RangeByteRequest(8, 100): b"89",
            RangeByteRequest(10, 20): b"",
            RangeByteRequest(50, 60): b"",
            RangeByteRequest(4, 4): b"",
            RangeByteRequest(5, 3): b"",
            OffsetByteRequest(0): b"0123456789",
            OffsetByteRequest(7): b"789",
            OffsetByteRequest(10): b"",
            OffsetByteRequest(99): b"",
            SuffixByteRequest(3): b"789",
            SuffixByteRequest(10): b"0123456789",
            SuffixByteRequest(99): b"0123456789",
            SuffixByteRequest(0): b"",
        }
        for br, want in cases.items():
            got = await store.get("k", PROTO, br)
            assert got is not None and got.to_bytes() == want, br
        # the same through get_partial_values, alone and coalesced with each other
        got = await store.get_partial_values(PROTO, [("k", br) for br in cases])
        assert [g.to_bytes() for g in got] == list(cases.values())
        got = await store.get_partial_values(PROTO, [("k", br) for br in cases] + [("k", None)])
        assert [g.to_bytes() for g in got] == [*cases.values(), b"0123456789"]
        for br in cases:
            assert await store.get("missing", PROTO, br) is None
        assert await store.get_partial_values(PROTO, [("missing", RangeByteRequest(0, 1)),
                                                      ("missing", RangeByteRequest(2, 3)),
                                                      ("missing", None)]) == [None] * 3

    async def test_get_partial_values_many_ranges(self, store):
        data = bytes(range(256)) * 64  # 16 KiB
        await store.set("shard", cpu.Buffer.from_bytes(data))
        await store.set("other", cpu.Buffer.from_bytes(data[::-1]))
        rng = np.random.default_rng(5)
        reqs = []
        for _ in range(300):
            key = "shard" if rng.random() < 0.7 else "other"
            s = int(rng.integers(0, len(data) + 100))
            e = s + int(rng.integers(0, 500))
            reqs.append((key, RangeByteRequest(s, e)))
        reqs += [("shard", SuffixByteRequest(17)), ("other", OffsetByteRequest(16000)),
                 ("absent", RangeByteRequest(0, 4))]
        got = await store.get_partial_values(PROTO, reqs)
        src = {"shard": data, "other": data[::-1]}
        for (key, br), g in zip(reqs, got):
            if key == "absent":
                assert g is None
                continue
            b = src[key]
            if isinstance(br, RangeByteRequest):
                want = b[br.start:br.end]
            elif isinstance(br, SuffixByteRequest):
                want = b[-br.suffix:]
            else:
                want = b[br.offset:]
            assert g.to_bytes() == want

    async def test_list_dir_unique_and_relative(self, store):
        for k in ["a/b/c", "a/b/d", "a/e", "a/f/g/h", "z"]:
            await store.set(k, cpu.Buffer.from_bytes(b"x"))
        names = [n async for n in store.list_dir("")]
        assert names == ["a", "z"]
        assert [n async for n in store.list_dir("a")] == ["b", "e", "f"]
        assert [n async for n in store.list_dir("a/")] == ["b", "e", "f"]
        assert [n async for n in store.list_dir("a/f/g")] == ["h"]
        assert [n async for n in store.list_dir("nope")] == []
        assert sorted([k async for k in store.list_prefix("a/b")]) == ["a/b/c", "a/b/d"]
        assert await store.getsize_prefix("a") == 4
        assert await store.getsize_prefix("") == 5
        await store.delete_dir("a/b")
        assert sorted([k async for k in store.list()]) == ["a/e", "a/f/g/h", "z"]
        assert await store.is_empty("a/b")
        assert not await store.is_empty("a")

    async def test_many_concurrent_gets(self, store):
        n = 300
        m = CloudFilesStore(store._url, **store._options)
        m.setitems({f"c/{i}": str(i).encode() * 10 for i in range(n)})
        got = await asyncio.gather(*(store.get(f"c/{i}", PROTO) for i in range(n)))
        assert [g.to_bytes() for g in got] == [str(i).encode() * 10 for i in range(n)]
        seen = {}
        async for k, b in store._get_many((f"c/{i}", PROTO, None) for i in range(n)):
            seen[k] = b.to_bytes()
        assert seen == {f"c/{i}": str(i).encode() * 10 for i in range(n)}

    def test_pickle_rebuilds_equal_store(self, store):
        ro = store.with_read_only(True)
        for s in (store, ro):
            t = pickle.loads(pickle.dumps(s))
            assert t == s and t.read_only == s.read_only
        assert ro != store

    def test_sync_methods_with_ranges(self, store):
        store.set_sync("s/k", cpu.Buffer.from_bytes(b"abcdef"))
        assert store.get_sync("s/k").to_bytes() == b"abcdef"
        assert store.get_sync("s/k", byte_range=RangeByteRequest(1, 3)).to_bytes() == b"bc"
        assert store.get_sync("s/k", byte_range=OffsetByteRequest(4)).to_bytes() == b"ef"
        assert store.get_sync("s/k", byte_range=SuffixByteRequest(2)).to_bytes() == b"ef"
        assert store.get_sync("s/k", byte_range=RangeByteRequest(9, 12)).to_bytes() == b""
        assert store.get_sync("s/missing", byte_range=RangeByteRequest(0, 1)) is None
        store.delete_sync("s/k")
        assert store.get_sync("s/k") is None
        ro = store.with_read_only(True)
        with pytest.raises(ValueError, match="read-only"):
            ro.set_sync("s/k", cpu.Buffer.from_bytes(b"x"))
        with pytest.raises(ValueError, match="read-only"):
            ro.delete_sync("s/k")

    async def test_read_only_refuses_every_write(self, store):
        ro = store.with_read_only(True)
        for coro in (ro.set_if_not_exists("k", cpu.Buffer.from_bytes(b"x")),
                     ro.delete_dir("a"), ro.clear()):
            with pytest.raises(ValueError, match="read-only"):
                await coro

    async def test_set_wrong_type(self, store):
        with pytest.raises(TypeError, match="Buffer"):
            await store.set("k", b"raw bytes")

    async def test_invalid_key(self, store):
        with pytest.raises(errors.InvalidKeyError):
            await store.get("a/../b", PROTO)
        with pytest.raises(errors.InvalidKeyError):
            await store.set("a//b", cpu.Buffer.from_bytes(b""))

    @pytest.mark.parametrize("shards", [False, True])
    def test_zarr_array_roundtrip(self, store, shards):
        rng = np.random.default_rng(1)
        data = rng.standard_normal((60, 50)).astype("float32")
        kwargs = {"shards": (30, 50)} if shards else {}
        root = zarr.open_group(store=store, mode="w")
        root.attrs["title"] = "t"
        a = root.create_array("x/data", shape=data.shape, chunks=(10, 25), dtype="float32",
                              **kwargs)
        a[...] = data
        # read back through a fresh store
        again = ZarrStore(store._url, read_only=True, **store._options)
        g = zarr.open_group(store=again, mode="r")
        assert g.attrs["title"] == "t"
        b = g["x/data"]
        np.testing.assert_array_equal(b[...], data)
        np.testing.assert_array_equal(b[3:47, 7:31], data[3:47, 7:31])
        chunk_keys = [k for k in zarr.core.sync.sync(_collect(again.list_prefix("x/data/c")))]
        assert len(chunk_keys) == (2 if shards else 12)  # a shard is one object
        assert store.get_sync("x/data/zarr.json") is not None


# ------------------------------------------------------------ hypothesis state machine

def _run_state_machine(url, options, max_examples):
    def factory():
        store = ZarrStore(url, **options)
        return ZarrStoreStateMachine(store)

    run_state_machine_as_test(
        factory,
        settings=settings(max_examples=max_examples, stateful_step_count=15, deadline=None,
                          suppress_health_check=list(HealthCheck), derandomize=True,
                          database=None),
    )


def test_state_machine_mem():
    _run_state_machine("mem://zarr-state-machine", {}, 60)


@pytest.fixture
def s3_backend(request):
    """The s3 backend from conftest when it exists (it is being added); else a loud failure
    for the s3 state machine, not a skip."""
    import conftest
    if "s3" not in conftest.BACKENDS:
        pytest.fail("conftest has no s3 backend yet")
    return conftest.BACKENDS["s3"](request, conftest._unique())


def test_state_machine_s3(s3_backend):
    _run_state_machine(s3_backend.url, s3_backend.options, 25)


# ------------------------------------------------------- asynchronous path, mechanics

def test_completions_one_per_loop_and_dropped_with_closed_loops():
    s = ZarrStore("mem://loops")

    async def use():
        await s.set("k", cpu.Buffer.from_bytes(b"v"))
        return (await s.get("k", PROTO)).to_bytes(), asyncio.get_running_loop()

    v, loop1 = asyncio.run(use())
    assert v == b"v"
    assert loop1 in zarr3_module._completions
    q1 = zarr3_module._completions[loop1]
    v, loop2 = asyncio.run(use())
    assert loop1 not in zarr3_module._completions  # closed loop forgotten on the next miss
    assert zarr3_module._completions[loop2] is not q1
    assert q1.in_flight == 0


def test_op_finishing_after_its_loop_closed_is_freed(fault_server):
    prefix = f"/late-{time.time_ns()}"
    fault_server.put(f"{prefix}/k", b"v")
    fault_server.add_faults(f"{prefix}/w", ["delay:0.4"])
    store = ZarrStore(fault_server.url + prefix)

    async def leave_one_behind():
        # a write: asyncio.run cancels the task as the loop closes, and a cancelled read
        # would be given up at once (test_interrupt.py), where a write on the wire goes on
        asyncio.ensure_future(store.set("w", PROTO.buffer.from_bytes(b"late")))
        await asyncio.sleep(0.05)
        return asyncio.get_running_loop()

    loop = asyncio.run(leave_one_behind())  # closes the loop with the get in flight
    q = zarr3_module._completions[loop]
    time.sleep(1.0)  # the server answers after 0.4 s
    assert q.in_flight == 1  # finished, but its loop will never drain it

    async def again():
        return (await store.get("k", PROTO)).to_bytes()

    assert asyncio.run(again()) == b"v"  # a new loop: the stale queue is swept and drained
    assert q.in_flight == 0 and loop not in zarr3_module._completions
    assert fault_server.get(f"{prefix}/w") == b"late"


def test_no_thread_per_call_and_loop_stays_responsive(fault_server):
    """300 gets that each take 0.3 s on the server: all in flight at once on one loop,
    no new thread, and the loop ticks every few ms meanwhile."""
    n = 300
    prefix = f"/{cloudfiles_store.__name__}-{time.time_ns()}"
    for i in range(n):
        fault_server.put(f"{prefix}/k{i}", b"v%d" % i)
        fault_server.add_faults(f"{prefix}/k{i}", ["delay:0.3"])
    store = ZarrStore(fault_server.url + prefix, concurrency=n)

    async def main():
        threads_before = threading.active_count()
        ticks = []
        stop = asyncio.Event()

        async def ticker():
            while not stop.is_set():
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.005)

        t = asyncio.create_task(ticker())
        t0 = time.perf_counter()
        got = await asyncio.gather(*(store.get(f"k{i}", PROTO) for i in range(n)))
        elapsed = time.perf_counter() - t0
        threads_during = threading.active_count()
        stop.set()
        await t
        return got, elapsed, threads_before, threads_during, ticks

    fault_server.reset_max_in_flight()
    got, elapsed, before, during, ticks = asyncio.run(main())
    assert [g.to_bytes() for g in got] == [b"v%d" % i for i in range(n)]
    assert during <= before + 1  # the engine's own thread at most, never one per call
    assert fault_server.max_concurrency(prefix) >= 200
    assert elapsed < 0.3 * n / 10  # far from one at a time
    gaps = np.diff(ticks)
    assert len(ticks) > 10 and gaps.max() < 0.5, gaps.max()  # 5 ms ticks; a blocked loop would stall 0.3 s x 300


def test_get_partial_values_coalesces_nearby_ranges(fault_server):
    prefix = f"/coalesce-{time.time_ns()}"
    data = bytes(range(256)) * 16384  # 4 MiB
    fault_server.put(f"{prefix}/shard", data)
    store = ZarrStore(fault_server.url + prefix)
    # 200 ranges of 1 KiB, 8 KiB apart: one request; plus two far regions
    reqs = [("shard", RangeByteRequest(o, o + 1024)) for o in range(0, 200 * 8192, 8192)]
    far = 3 << 20
    reqs += [("shard", RangeByteRequest(far, far + 10)), ("shard", RangeByteRequest(far + 5, far + 20))]
    fault_server.clear_requests()
    got = asyncio.run(store.get_partial_values(PROTO, reqs))
    assert [g.to_bytes() for g in got] == [data[r.start:r.end] for _, r in reqs]
    gets = fault_server.requests(f"{prefix}/shard", method="GET")
    assert len(gets) == 2, [fault_server.header(r, "Range") for r in gets]
    ranges = sorted(fault_server.header(r, "Range") for r in gets)
    assert ranges == sorted([f"bytes=0-{199 * 8192 + 1023}", f"bytes={far}-{far + 19}"])


def test_delete_dir_deletes_up_to_a_thousand_keys_a_request(moto_server):
    """On S3, delete_dir sends DeleteObjects, as delitems does, not a DELETE per key."""
    url = moto_server.url(f"deldir-{time.time_ns()}")
    opts = moto_server.store_options()
    m = CloudFilesStore(url, **opts)
    m.setitems({f"a/c/{i}": b"x" for i in range(1200)})
    m["a/zarr.json"] = m["b/zarr.json"] = b"{}"
    store = ZarrStore(url, **opts)
    before = cloudfiles_store.engine_stats()["requests"]
    asyncio.run(store.delete_dir("a"))
    used = cloudfiles_store.engine_stats()["requests"] - before
    # 1,201 keys: two listing pages, two DeleteObjects (S3 RMDIR sends nothing)
    assert used <= 4, f"{used} requests for 1,201 keys"
    assert list(m) == ["b/zarr.json"]


def test_cancelled_get_is_harmless(fault_server):
    prefix = f"/cancel-{time.time_ns()}"
    fault_server.put(f"{prefix}/slow", b"slow")
    fault_server.add_faults(f"{prefix}/slow", ["delay:0.5"])
    fault_server.put(f"{prefix}/fast", b"fast")
    store = ZarrStore(fault_server.url + prefix)

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(store.get("slow", PROTO), 0.05)
        await asyncio.sleep(0.6)  # the engine finishes the cancelled op; drain skips it
        return (await store.get("fast", PROTO)).to_bytes()

    assert asyncio.run(main()) == b"fast"


def test_errors_reach_the_awaiting_coroutine(fault_server):
    prefix = f"/errors-{time.time_ns()}"
    fault_server.put(f"{prefix}/k", b"x")
    fault_server.add_faults(f"{prefix}/k", ["500"] * 3)
    store = ZarrStore(fault_server.url + prefix, retries=2, retry_base=0.01, retry_cap=0.02)
    with pytest.raises(errors.TransientError) as ei:
        asyncio.run(store.get("k", PROTO))
    assert ei.value.operation == "get" and ei.value.key == "k"


def test_zarr_array_and_secret_kept_out_of_repr(fault_server):
    s = ZarrStore(f"{fault_server.url}/sync-api-{time.time_ns()}", bearer_token="sekrit")
    assert "sekrit" not in repr(s) and "sekrit" not in str(s)
    z = zarr.create_array(store=s, shape=(100,), chunks=(7,), dtype="int64")
    z[:] = np.arange(100)
    np.testing.assert_array_equal(zarr.open_array(store=s, mode="r")[:], np.arange(100))
    t = pickle.loads(pickle.dumps(s))
    assert t == s
