"""Bodies reach Python as bytes objects without a copy: a body becomes the bytes object where
it lies (its buffer keeps room for the object's header, buf.h: CFS_BUF_HEAP_HEADER); one of
4 MiB or more is faulted in at once first. Sizes around the page and threshold boundaries
must come back byte for byte, as complete bytes objects, through every read path, on every
backend."""
import ctypes
import json
import os
import subprocess
import sys
import tracemalloc

import pytest

MiB = 1 << 20
SIZES = [4 * MiB - 1, 4 * MiB, 4 * MiB + 4047, 4 * MiB + 4048, 4 * MiB + 4049, 9 * MiB + 17]


@pytest.mark.parametrize("size", SIZES)
def test_large_values_round_trip(store, size):
    value = os.urandom(size)
    store["big"] = value
    got = store["big"]
    assert type(got) is bytes and got == value
    many = store.getitems(["big", "missing"])
    assert list(many) == ["big"] and many["big"] == value
    assert [(k, v) for k, v in store.iter_get(["big"])] == [("big", value)]
    assert store.get_ranges([("big", 4095, None)]) == [value[4095:]]
    del got, many
    assert store["big"] == value  # the buffers given back and taken again


def test_many_large_values_at_once(store):
    values = {f"k{i}": os.urandom(4 * MiB + i * 4099) for i in range(6)}
    store.setitems(values)
    got = store.getitems(list(values) * 2)
    assert got == values


# around pymalloc's threshold (512), a page, 64 KiB, the 4 MiB of prefaulted buffers, and
# above glibc's largest mmap threshold (32 MiB)
IN_PLACE_SIZES = [1, 512, 513, 4096 - 33, 4096, 65535, 65536, 65537, MiB, 4 * MiB - 33, 4 * MiB,
                  33 * MiB + 5]


def _without_nul(size):
    return os.urandom(size).replace(b"\0", b"\x01")


def _assert_whole_bytes(got, value):
    """A bytes object indistinguishable from a copy of value: C sees it end with a NUL
    right after its last byte (ctypes.string_at reads up to the first NUL), hash and size
    are those of any bytes object with that content."""
    assert type(got) is bytes and got == value
    assert ctypes.string_at(got) == value
    assert hash(got) == hash(bytes(bytearray(value)))
    assert sys.getsizeof(got) == sys.getsizeof(value)


@pytest.mark.parametrize("size", IN_PLACE_SIZES)
def test_values_are_whole_bytes_objects(store, size):
    value = _without_nul(size)
    store["v"] = value
    got = [store["v"], store.getitems(["v"])["v"], next(iter(store.iter_get(["v"])))[1]]
    store.close()  # values outlive their store
    for v in got:
        _assert_whole_bytes(v, value)


@pytest.mark.parametrize("size", [1, 513, 600_000, 5 * MiB + 7, 40 * MiB + 3])
def test_bodies_of_unknown_length_become_bytes_of_their_size(fault_server, size):
    """A chunked response grows its buffer as it comes; the value keeps no more memory than
    its size (the buffer is trimmed before it becomes the bytes object)."""
    from cloudfiles_store import CloudFilesStore

    value = _without_nul(size)
    path = f"/chunked{size}/c"
    fault_server.put(path, value)
    fault_server.add_faults(path, ["chunked", "chunked"])
    with CloudFilesStore(fault_server.url + f"/chunked{size}") as store:
        got = store["c"]
        many = store.getitems(["c"])
    assert [r.fault for r in fault_server.requests(path)] == ["chunked", "chunked"]
    malloc_usable_size = ctypes.CDLL(None).malloc_usable_size
    malloc_usable_size.restype = ctypes.c_size_t
    for v in (got, many["c"]):
        _assert_whole_bytes(v, value)
        if size > 512:  # (shorter ones may be CPython's own, not malloc'd)
            assert malloc_usable_size(ctypes.c_void_p(id(v))) <= sys.getsizeof(v) + size // 8 + 4096


def test_values_are_counted_by_tracemalloc(store):
    """Under tracemalloc (an allocator hook) values are copies into memory Python allocated,
    so that tracemalloc accounts for them."""
    value = os.urandom(256 * 1024)
    store["t"] = value
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        got = [store["t"], store.getitems(["t"])["t"]]
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert got == [value, value]
    assert grown >= 2 * len(value)


_READ_BACK = """
import json, os, sys
from cloudfiles_store import CloudFilesStore
s = CloudFilesStore(sys.argv[1], **json.loads(sys.argv[2]))
values = {f"k{i}": os.urandom(n) for i, n in enumerate([600, 4096, 65536, 1 << 20, 5 << 20])}
s.setitems(values)
for _ in range(3):
    assert s.getitems(list(values)) == values
    assert all(s[k] == v for k, v in values.items())
    assert dict(s.iter_get(list(values))) == values
print("ok")
"""


@pytest.mark.parametrize("allocator", ["debug", "pymalloc_debug", "malloc", "malloc_debug"])
def test_values_under_other_allocators(backend, allocator):
    """Under CPython's debug hooks a bytes object is not a plain malloc'd block: the values
    must be copies there (a block of ours freed through the hooks aborts the process);
    under PYTHONMALLOC=malloc they may become bytes where they lie."""
    env = {**os.environ, "PYTHONMALLOC": allocator}
    r = subprocess.run([sys.executable, "-c", _READ_BACK, backend.url, json.dumps(backend.options)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
