"""The main job on an embedded default: write a real zarr array through cloudfiles_store
into a local file:// directory and into a loopback nginx this script starts, read it
back, check every value, and print the throughput.

    python3 benchmarks/demo.py [--shape 2048 2048] [--chunks 256 256]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import zarr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from servers.nginx import NginxServer  # noqa: E402

from cloudfiles_store import CloudFilesStore, ZarrStore  # noqa: E402


def roundtrip(label: str, url: str, data: np.ndarray, chunks: tuple[int, ...]) -> None:
    store = ZarrStore(url)
    t0 = time.perf_counter()
    arr = zarr.create_array(store, shape=data.shape, chunks=chunks, dtype=data.dtype,
                            compressors=None, overwrite=True)
    arr[...] = data
    t1 = time.perf_counter()
    back = zarr.open_array(ZarrStore(url), mode="r")[...]
    t2 = time.perf_counter()
    if not np.array_equal(back, data):
        raise SystemExit(f"{label}: the array read back differs from the one written")
    n_chunks = int(np.prod([-(-s // c) for s, c in zip(data.shape, chunks)]))
    mb = data.nbytes / 1e6
    print(f"{label:>6}: zarr 3 write {mb / (t1 - t0):8.1f} MB/s, read {mb / (t2 - t1):8.1f} MB/s "
          f"({n_chunks} chunks, {mb:.0f} MB, checked)")


def mapping_getitems(label: str, url: str, n: int, size: int) -> None:
    store = CloudFilesStore(url, concurrency=64)
    payload = {f"obj/{i}": os.urandom(size) for i in range(n)}
    store.setitems(payload)
    t0 = time.perf_counter()
    got = store.getitems(payload)
    dt = time.perf_counter() - t0
    if got != payload:
        raise SystemExit(f"{label}: getitems returned different bytes")
    print(f"{label:>6}: getitems {n} x {size // 1024} KiB: {n / dt:8.0f} objects/s, "
          f"{n * size / dt / 1e6:8.1f} MB/s (checked)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs="+", default=[2048, 2048])
    ap.add_argument("--chunks", type=int, nargs="+", default=[256, 256])
    ap.add_argument("--objects", type=int, default=5000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    data = rng.random(tuple(args.shape), dtype=np.float64)
    chunks = tuple(args.chunks)
    with tempfile.TemporaryDirectory(prefix="cfs-demo-") as tmp:
        file_url = "file://" + os.path.join(tmp, "array.zarr")
        roundtrip("file", file_url, data, chunks)
        mapping_getitems("file", "file://" + os.path.join(tmp, "objects"), args.objects, 64 * 1024)
        with NginxServer(tls=False) as nginx:
            roundtrip("http", nginx.url + "/demo/array.zarr", data, chunks)
            mapping_getitems("http", nginx.url + "/demo/objects", args.objects, 64 * 1024)
    print("demo: all values checked")


if __name__ == "__main__":
    main()
