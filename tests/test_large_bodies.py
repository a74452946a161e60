"""Large bodies (4 MiB and more) reach Python as bytes whose whole pages were moved from the
engine's buffer (buf.h: CFS_BUF_MAP_MIN); sizes around the page and threshold boundaries
must come back byte for byte through every read path, on every backend."""
import os

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
