"""The engine's own promises, seen from Python: connections kept alive across batches,
per-store admission control, bounded memory for long streams, and completion of
asyncio futures without a thread per call."""

import asyncio
import os
import resource
import subprocess
import sys
import threading
import urllib.parse
import uuid

import pytest

import cloudfiles_store
from cloudfiles_store import CloudFilesStore, _core, errors


def test_connections_reused_across_batches(nginx_url):
    s = CloudFilesStore(nginx_url, concurrency=8)
    s.setitems({f"k/{i}": b"v" * 100 for i in range(200)})
    before = cloudfiles_store.engine_stats()
    for _ in range(3):
        assert len(s.getitems(f"k/{i}" for i in range(200))) == 200
    after = cloudfiles_store.engine_stats()
    assert after["requests"] - before["requests"] == 600
    # keep-alive: at most one connection per concurrent slot is ever opened again
    assert after["connections"] - before["connections"] <= 8


def test_long_stream_runs_in_bounded_memory():
    s = CloudFilesStore(f"mem://stream-{os.getpid()}", concurrency=32)
    s.setitems({"present": b"x" * 1000})
    n = 300_000

    def keys():
        for i in range(n):
            yield "present" if i % 1000 == 0 else f"absent/{i}"

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    seen = present = 0
    for key, value in s.iter_get(keys()):
        seen += 1
        present += value is not None
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert seen == n and present == n // 1000
    assert grown_mib < 64, f"peak RSS grew {grown_mib:.0f} MiB streaming {n} keys"


def test_two_stores_have_their_own_concurrency(fault_server, fault_url):
    slow = CloudFilesStore(fault_url, concurrency=1)
    fast = CloudFilesStore(fault_url, concurrency=16)
    fast.setitems({f"f/{i}": b"v" for i in range(32)})
    slow.setitems({"s/0": b"v"})
    fault_server.add_faults(urllib.parse.urlsplit(fault_url).path + "/s/0", ["stall:2"])
    done = threading.Event()

    def slow_read():
        slow.getitems(["s/0"])
        done.set()

    t = threading.Thread(target=slow_read)
    t.start()
    # the slow store's stalled request must not hold back the other store's batch
    assert len(fast.getitems(f"f/{i}" for i in range(32))) == 32
    assert not done.is_set()
    t.join(30)
    assert done.is_set()


async def test_async_completions_resolve_on_the_loop(store, store_options):
    store.setitems({f"a/{i}": bytes([i]) * 10 for i in range(200)})
    raw = _core.Store.__new__(_core.Store)
    raw.__init__(store.url, **store_options)  # store.options shows secrets as '***'
    loop = asyncio.get_running_loop()
    comp = _core.Completions()
    loop.add_reader(comp.fileno(), comp.drain)
    try:
        futures = []
        for i in range(200):
            f = loop.create_future()
            comp.get(raw, f"a/{i}", f)
            futures.append(f)
        missing = loop.create_future()
        comp.get(raw, "nope", missing)
        values = await asyncio.gather(*futures)
        assert values == [bytes([i]) * 10 for i in range(200)]
        assert await missing is None
        assert comp.in_flight == 0
    finally:
        loop.remove_reader(comp.fileno())


def test_completions_take_no_arguments():
    for args, kwargs in [((1,), {}), ((), {"loop": None})]:
        with pytest.raises(TypeError, match="Completions"):
            _core.Completions(*args, **kwargs)


async def test_async_op_keeps_its_store_alive(nginx_url):
    loop = asyncio.get_running_loop()
    comp = _core.Completions()
    loop.add_reader(comp.fileno(), comp.drain)
    try:
        raw = _core.Store(nginx_url)
        raw["k"] = b"v" * 100_000
        futures = []
        for _ in range(50):
            f = loop.create_future()
            comp.get(raw, "k", f)
            futures.append(f)
        del raw  # the ops in flight hold the store, not the caller
        assert all(v == b"v" * 100_000 for v in await asyncio.gather(*futures))
    finally:
        loop.remove_reader(comp.fileno())


async def test_async_list_dir_names_each_directory_once(store, store_options):
    store.setitems({"foo/zarr.json": b"1", "foo/c/0": b"2", "foo/c/1": b"3", "x": b""})
    raw = _core.Store(store.url, **store_options)
    loop = asyncio.get_running_loop()
    comp = _core.Completions()
    loop.add_reader(comp.fileno(), comp.drain)
    try:
        f = loop.create_future()
        comp.list_dir(raw, "", f)
        top = sorted((name, is_dir) for name, _, is_dir in await f)
        assert top == [("foo", True), ("x", False)]
        f = loop.create_future()
        comp.list_dir(raw, "foo/", f)
        assert sorted((name, is_dir) for name, _, is_dir in await f) == [
            ("foo/c", True), ("foo/zarr.json", False)]
    finally:
        loop.remove_reader(comp.fileno())


async def _resolved(submit, *args):
    """Call a Completions method as (comp, *args[:2], future, *args[2:]) on this loop and
    await the future."""
    loop = asyncio.get_running_loop()
    comp = _core.Completions()
    loop.add_reader(comp.fileno(), comp.drain)
    try:
        f = loop.create_future()
        submit(comp, *args[:2], f, *args[2:])
        return await f
    finally:
        loop.remove_reader(comp.fileno())


async def test_async_delete_many_takes_only_what_one_request_can(moto_server):
    raw = _core.Store(moto_server.url(uuid.uuid4().hex), **moto_server.store_options())
    assert raw.delete_many_max == 1000  # DeleteObjects
    raw.setitems({"a": b"1", "b": b"2", "c": b"3"})
    assert await _resolved(_core.Completions.delete_many, raw, ("a", "b", "missing")) is None
    assert list(raw.keys()) == ["c"]
    for keys, error in [([], ValueError), (["k"] * 1001, ValueError), ("ab", TypeError),
                        (["ok", "../bad"], errors.InvalidKeyError), (["ok", 3], errors.InvalidKeyError)]:
        with pytest.raises(error):
            await _resolved(_core.Completions.delete_many, raw, keys)
    mem = _core.Store(f"mem://{uuid.uuid4().hex}")
    assert mem.delete_many_max == 0
    with pytest.raises(ValueError, match="one key per request"):
        await _resolved(_core.Completions.delete_many, mem, ["a"])


async def test_async_delete_many_failure_names_every_key(fault_server):
    """A refused multi-key delete (the fault server answers POST ?delete with 405) fails its
    future with a BatchError holding an error per key, after one request."""
    prefix = uuid.uuid4().hex
    raw = _core.Store(f"s3://bkt/{prefix}", endpoint_url=fault_server.url, access_key_id="AKID",
                      secret_access_key="SECRET", retries=1)
    before = cloudfiles_store.engine_stats()["requests"]
    with pytest.raises(errors.BatchError) as ei:
        await _resolved(_core.Completions.delete_many, raw, ["a", "b/c"])
    assert cloudfiles_store.engine_stats()["requests"] - before == 1
    assert ei.value.operation == "delete_many"
    assert [e.key for e in ei.value.errors] == ["a", "b/c"]
    assert all(isinstance(e, errors.RequestError) and e.status == 405 for e in ei.value.errors)


@pytest.mark.parametrize("cores", [1, 2])
def test_a_lane_per_core_the_process_may_use(nginx_url, cores):
    """The engine runs a transfer thread (lane) per core in the process's CPU affinity, up
    to 4; each store's ops spread over the lanes without exceeding its concurrency, and a
    batch comes back whole either way. Fresh processes: the engine starts on first use."""
    if len(os.sched_getaffinity(0)) < cores:
        pytest.fail(f"this test needs {cores} cores, the machine has {len(os.sched_getaffinity(0))}")
    s = CloudFilesStore(nginx_url, concurrency=8)
    values = {f"lanes/{i}": os.urandom(3000) for i in range(400)}
    s.setitems(values)
    child = (
        "import os, sys, cloudfiles_store as c\n"
        "os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:int(sys.argv[2])])\n"
        "s = c.CloudFilesStore(sys.argv[1], concurrency=8)\n"
        "keys = [f'lanes/{i}' for i in range(400)]\n"
        "got = s.getitems(keys)\n"
        "print(c.engine_stats()['lanes'], c.engine_stats()['connections'], len(got),\n"
        "      sum(len(v) for v in got.values()))\n"
    )
    run = subprocess.run([sys.executable, "-c", child, nginx_url, str(cores)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lanes, connections, n, total = map(int, run.stdout.split())
    assert lanes == cores
    assert (n, total) == (400, 400 * 3000)
    assert 1 <= connections <= 8  # the store's concurrency, however many lanes


def test_http2_multiplexes_on_one_connection(nginx):
    """http2=True negotiates HTTP/2 with nginx over TLS and a whole batch shares one
    connection per lane (transfer thread); HTTP/1.1 (the default, measured faster here)
    opens one per transfer in flight. Each runs in a fresh process, so no connection is
    inherited from another test."""
    values = {f"h2/{i}": os.urandom(2000) for i in range(300)}
    base = f"{nginx.tls_url}/{uuid.uuid4().hex}"
    CloudFilesStore(base, ca_bundle=nginx.ca_file).setitems(values)
    child = (
        "import sys, cloudfiles_store as c\n"
        "s = c.CloudFilesStore(sys.argv[1], ca_bundle=sys.argv[2], http2=sys.argv[3] == '1', concurrency=32)\n"
        "got = s.getitems([f'h2/{i}' for i in range(300)])\n"
        "assert len(got) == 300 and all(len(v) == 2000 for v in got.values())\n"
        "st = c.engine_stats()\n"
        "print(st['connections'], st['lanes'])\n"
    )
    opened = {}
    for h2 in ("0", "1"):
        run = subprocess.run([sys.executable, "-c", child, base, nginx.ca_file, h2],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        opened[h2], lanes = map(int, run.stdout.split())
    assert 1 <= lanes <= 4
    assert opened["1"] <= lanes, opened
    assert opened["0"] > 2 * lanes, opened
