"""zarr 3 given a CloudFilesStore (the mapping, zarr 2's kind of store) raises a TypeError
that names ZarrStore, whichever of zarr and cloudfiles_store is imported first; zarr's other
kinds of store_like still work, and so does a ZarrStore."""
import subprocess
import sys
import textwrap

import pytest

PROGRAM = """\
    {imports}
    import numpy as np
    from cloudfiles_store import CloudFilesStore, ZarrStore

    url = "mem://guard-{order}"
    for call in (lambda s: zarr.open(store=s, mode="w", shape=(4,), dtype="i4"),
                 lambda s: zarr.open_group(store=s, mode="r"),
                 lambda s: zarr.create_array(store=s, shape=(2,), dtype="u1")):
        try:
            call(CloudFilesStore(url))
        except TypeError as e:
            msg = str(e)
            assert "ZarrStore" in msg and repr(url) in msg and "CloudFilesStore" in msg, msg
        else:
            raise AssertionError("no TypeError")
    a = zarr.open(store=ZarrStore(url), mode="w", shape=(4,), dtype="i4")
    a[:] = np.arange(4)
    assert list(zarr.open(store=ZarrStore(url), mode="r")[:]) == [0, 1, 2, 3]
    # zarr's own conversions are untouched: a dict, None, a path
    assert zarr.open(store={{}}, mode="w", shape=(1,)).shape == (1,)
    assert zarr.open(store=None, mode="w", shape=(1,)).shape == (1,)
    try:
        zarr.open(store=object())
    except TypeError as e:
        assert "Unsupported type for store_like" in str(e), e
    print("ok")
"""


@pytest.mark.parametrize("order", ["zarr-first", "cloudfiles-first"])
def test_zarr3_names_zarrstore_for_a_cloudfilesstore(order):
    imports = "import zarr\nimport cloudfiles_store" if order == "zarr-first" \
        else "import cloudfiles_store\nimport zarr"
    src = textwrap.dedent(PROGRAM).format(imports=imports, order=order)
    res = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout + res.stderr
