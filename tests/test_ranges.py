"""Coalesced byte ranges: the mapping's get_ranges and ZarrStore.get_partial_values follow
one plan (cloudfiles_store/_ranges.py); the requests are counted at the fault server."""
import asyncio
import os
import uuid

import pytest

from cloudfiles_store import CloudFilesStore, _ranges

MIB = 1 << 20


@pytest.fixture
def shard(fault_server):
    base = f"/{uuid.uuid4().hex}"
    data = os.urandom(4 * MIB)
    fault_server.put(f"{base}/shard", data)
    fault_server.put(f"{base}/other", b"0123456789")
    return fault_server, base, data


def _gets(srv, path):
    return [r for r in srv.requests(path) if r.method == "GET"]


def test_get_ranges_coalesces_near_ranges(shard):
    srv, base, data = shard
    store = CloudFilesStore(srv.url + base)
    ranges = [("shard", 0, 100), ("shard", 5000, 6000), ("shard", 200, 300),   # one request
              ("shard", 3 * MIB, 3 * MIB + 10),                                # > 1 MiB away
              ("shard", -10, None),                                            # a suffix
              ("other", 2, 5), ("missing", 0, 1)]
    got = store.get_ranges(ranges)
    assert got == [data[0:100], data[5000:6000], data[200:300], data[3 * MIB:3 * MIB + 10],
                   data[-10:], b"234", None]
    gets = _gets(srv, f"{base}/shard")
    assert len(gets) == 3, [srv.header(r, "range") for r in gets]
    assert sorted(srv.header(r, "range") for r in gets) == sorted(
        ["bytes=0-5999", f"bytes={3 * MIB}-{3 * MIB + 9}", "bytes=-10"])


def test_get_ranges_whole_read_serves_all(shard):
    srv, base, data = shard
    store = CloudFilesStore(srv.url + base)
    got = store.get_ranges([("shard", 10, 20), ("shard", 0, None), ("shard", -5, None),
                            ("shard", 4 * MIB + 1, 4 * MIB + 9)])
    assert got == [data[10:20], data, data[-5:], b""]
    assert len(_gets(srv, f"{base}/shard")) == 1


def test_get_ranges_past_end_and_bad_input(shard):
    srv, base, data = shard
    store = CloudFilesStore(srv.url + base)
    assert store.get_ranges([("other", 8, 20), ("other", 50, 60)]) == [b"89", b""]
    with pytest.raises(ValueError):
        store.get_ranges([("other", 5, 2)])
    with pytest.raises(TypeError):
        store.get_ranges([("other", "a", None)])
    assert store.get_ranges(iter([("other", 0, 2)])) == [b"01"]


def test_zarr_partial_values_same_plan(shard):
    zarr = pytest.importorskip("zarr")  # noqa: F841 - the zarr 3 environment has it
    from zarr.abc.store import RangeByteRequest, SuffixByteRequest
    from zarr.core.buffer import default_buffer_prototype

    from cloudfiles_store import ZarrStore
    srv, base, data = shard
    store = ZarrStore(srv.url + base, read_only=True)
    req = [("shard", RangeByteRequest(0, 100)), ("shard", RangeByteRequest(200, 300)),
           ("shard", RangeByteRequest(5000, 6000)), ("shard", SuffixByteRequest(10))]

    async def run():
        return await store.get_partial_values(default_buffer_prototype(), req)

    got = asyncio.run(run())
    assert [g.to_bytes() for g in got] == [data[0:100], data[200:300], data[5000:6000], data[-10:]]
    assert len(_gets(srv, f"{base}/shard")) == 2


def test_plan_limits():
    # far apart: separate; merged requests stop at COALESCE_MAX
    reqs, members = _ranges.plan([("k", 0, 10), ("k", 10 + _ranges.COALESCE_GAP + 1, 20 + 2 * MIB)])
    assert len(reqs) == 2
    step = 8 * MIB
    many = [("k", i * step, i * step + step) for i in range(16)]  # 128 MiB, contiguous
    reqs, members = _ranges.plan(many)
    assert len(reqs) == 2 and all(e - s <= _ranges.COALESCE_MAX for _k, s, e in reqs)
    assert sorted(i for m in members for i, _how in m) == list(range(16))


@pytest.fixture(params=["mem", "file", "s3"])
def gzip_store(request, tmp_path):
    """A store holding "g", gzip-encoded (stored as K.gz on file://), and "p", plain."""
    if request.param == "mem":
        store = CloudFilesStore(f"mem://{uuid.uuid4().hex}")
    elif request.param == "file":
        store = CloudFilesStore(f"file://{tmp_path}")
    else:
        moto = request.getfixturevalue("moto_server")
        store = CloudFilesStore(moto.url(uuid.uuid4().hex), **moto.store_options())
    value = b"".join(b"line %06d of a compressible object\n" % i for i in range(20000))
    store.put("g", value, compress="gzip")
    store["p"] = b"0123456789"
    return store, value


def test_get_ranges_raw_ranges_the_stored_bytes(gzip_store):
    """raw=True: ranges of the stored (encoded) bytes with the encoding; by default the
    ranges are of the decoded value."""
    store, value = gzip_store
    stored, encoding = store.get_raw("g")
    assert encoding == "gzip" and len(stored) < len(value) // 4
    ranges = [("g", 0, 10), ("g", 100, 2000), ("g", 1000, None), ("g", len(stored) + 5, len(stored) + 9),
              ("p", 2, 5), ("missing", 0, 1)]
    got = store.get_ranges(ranges, raw=True)
    past_end = got.pop(3)  # b"": its encoding is known when read with the others, not alone
    assert past_end[0] == b"" and past_end[1] in ("gzip", None)
    assert got == [(stored[0:10], "gzip"), (stored[100:2000], "gzip"), (stored[1000:], "gzip"),
                   (b"234", None), None]
    assert store.get_ranges([("g", len(stored) + 5, None)], raw=True) == [(b"", None)]
    assert store.get_ranges(ranges) == [value[0:10], value[100:2000], value[1000:],
                                        value[len(stored) + 5:len(stored) + 9], b"234", None]
    with pytest.raises(TypeError):
        store.get_ranges(ranges, raw=True, extra=1)
