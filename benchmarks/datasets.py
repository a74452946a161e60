"""Benchmark data: objects written straight into the directory nginx serves.

Layout under DATA_DIR/root (nginx's root), URL path = /bucket/<workload>/<key>:

    bucket/o64k/000000 ...    64 KiB objects
    bucket/o16k/000000 ...    16 KiB objects
    bucket/o1m/0000 ...        1 MiB objects
    bucket/o64m/00 ...        64 MiB objects
    bucket/shard/shard        one 256 MiB "shard" read by small byte ranges

Objects are random bytes (numpy PCG64 seeded by set name and index, so a re-created data
set is byte-identical). DATA_DIR/manifest.json records, per set, how many objects exist and
a CRC per object, so runs reuse the data and quick runs use a prefix of it. A set grows on
demand: a quick run writes only what it needs, a full run adds the rest.

The checksum of a fetch is order independent but binds each object to its key:
    sum over objects of crc32(data, crc32(key)) mod 2**64
so a client that swaps two objects' bodies, truncates or corrupts one is caught.
"""
import json
import os
import zlib

import numpy as np

KiB = 1024
MiB = 1024 * KiB

# name -> (object size, full-run count, quick-run count, key width)
OBJECT_SETS = {
    "o64k": (64 * KiB, 10_000, 3_000, 6),
    "o16k": (16 * KiB, 20_000, 6_000, 6),
    "o1m": (1 * MiB, 256, 64, 4),
    "o64m": (64 * MiB, 8, 2, 2),
}
SHARD_SIZE = 256 * MiB
RANGES_FULL = 2_000
RANGES_QUICK = 500
RANGE_MIN = 1 * KiB
RANGE_MAX = 64 * KiB


def object_crc(key, data):
    return zlib.crc32(data, zlib.crc32(key.encode()))


def combine(crcs):
    return sum(crcs) % (1 << 64)


def _gen(name, index, size):
    seed = zlib.crc32(name.encode()) * 1_000_003 + index
    return np.random.Generator(np.random.PCG64(seed)).bytes(size)


def _write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class Data:
    """The on-disk data set (created or extended lazily)."""

    def __init__(self, data_dir):
        self.data_dir = os.path.abspath(data_dir)
        self.root = os.path.join(self.data_dir, "root")
        self.bucket = os.path.join(self.root, "bucket")
        self.manifest_path = os.path.join(self.data_dir, "manifest.json")
        os.makedirs(self.bucket, exist_ok=True)
        try:
            with open(self.manifest_path) as f:
                self.manifest = json.load(f)
        except (OSError, ValueError):
            self.manifest = {}

    def _save(self):
        tmp = self.manifest_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.manifest, f)
        os.replace(tmp, self.manifest_path)

    @staticmethod
    def key(name, i):
        return f"{i:0{OBJECT_SETS[name][3]}d}"

    def ensure_objects(self, name, count, log=print):
        """Make sure objects 0..count-1 of set `name` exist; return (keys, crcs)."""
        size = OBJECT_SETS[name][0]
        d = os.path.join(self.bucket, name)
        os.makedirs(d, exist_ok=True)
        entry = self.manifest.get(name)
        if not entry or entry.get("size") != size:
            entry = {"size": size, "crcs": []}
        crcs = entry["crcs"]
        # cheap integrity check of what the manifest claims exists: sizes by stat
        for i in range(min(len(crcs), count)):
            p = os.path.join(d, self.key(name, i))
            try:
                ok = os.stat(p).st_size == size
            except OSError:
                ok = False
            if not ok:
                log(f"  data: {name}/{self.key(name, i)} missing or wrong size: rewriting set from {i}")
                del crcs[i:]
                break
        if len(crcs) < count:
            log(f"  data: writing {count - len(crcs)} x {size // KiB} KiB objects into {d}")
            for i in range(len(crcs), count):
                k = self.key(name, i)
                data = _gen(name, i, size)
                _write_atomic(os.path.join(d, k), data)
                crcs.append(object_crc(k, data))
                if size >= MiB and i % 4 == 3:
                    self.manifest[name] = entry
                    self._save()
            self.manifest[name] = entry
            self._save()
        keys = [self.key(name, i) for i in range(count)]
        return keys, crcs[:count]

    def ensure_shard(self, log=print):
        d = os.path.join(self.bucket, "shard")
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, "shard")
        entry = self.manifest.get("shard")
        try:
            ok = entry and entry.get("size") == SHARD_SIZE and os.stat(p).st_size == SHARD_SIZE
        except OSError:
            ok = False
        if not ok:
            log(f"  data: writing the {SHARD_SIZE // MiB} MiB shard {p}")
            tmp = p + ".tmp"
            with open(tmp, "wb") as f:
                for i in range(SHARD_SIZE // (16 * MiB)):
                    f.write(_gen("shard", i, 16 * MiB))
            os.replace(tmp, p)
            self.manifest["shard"] = {"size": SHARD_SIZE}
            self._save()
        return p

    def ranges(self, count):
        """`count` deterministic (start, end) ranges inside the shard and their checksum.

        Range sizes are uniform in [1 KiB, 64 KiB]; offsets uniform; half-open [start, end).
        """
        p = self.ensure_shard()
        rng = np.random.Generator(np.random.PCG64(20240601))
        lengths = rng.integers(RANGE_MIN, RANGE_MAX + 1, size=RANGES_FULL)
        starts = rng.integers(0, SHARD_SIZE - RANGE_MAX, size=RANGES_FULL)
        out = [(int(s), int(s + n)) for s, n in zip(starts, lengths)][:count]
        crcs = []
        with open(p, "rb") as f:
            for s, e in out:
                f.seek(s)
                crcs.append(object_crc(f"{s}-{e}", f.read(e - s)))
        return out, crcs


# zarr 3 array, uncompressed uint8 with 1 MiB chunks (1024 x 1024): full 1 GiB, quick 128 MiB.
# Uncompressed on purpose: with compression the codec's CPU (the same for every store) would
# dominate on 2 cores and hide the stores' differences.
ZARR3_SHAPES = {"full": (32768, 32768), "quick": (8192, 16384)}
# zarr 2 format array for the zarr 2.18 read (our mapping vs FSStore): 512 MiB (quick 128 MiB),
# same 1 MiB uncompressed uint8 chunks; written by zarr 3 with zarr_format=2.
ZARR2_SHAPES = {"full": (16384, 32768), "quick": (8192, 16384)}
ZARR_CHUNKS = (1024, 1024)


def _zarr_ensure(self, fmt, which, log=print, zstd=False):
    """Write the source array of zarr format `fmt` (2 or 3) under bucket/zarr<fmt>/<which>
    (once); return its description. zstd=True: the zarr 3 array under bucket/zarr3z/, its
    values 4 random bits a byte (so chunks compress about 2:1), chunks zstd level 3."""
    import shutil

    import zarr
    from zarr.storage import LocalStore

    name = f"zarr{fmt}" + ("z" if zstd else "")
    shape = (ZARR3_SHAPES if fmt == 3 else ZARR2_SHAPES)[which]
    path = os.path.join(self.bucket, name, which)
    marker = "zarr.json" if fmt == 3 else ".zarray"
    entry = self.manifest.get(f"{name}-{which}")
    if entry and entry.get("shape") == list(shape) and os.path.exists(os.path.join(path, marker)):
        return entry
    log(f"  data: writing the zarr {fmt} format array {shape} uint8, chunks {ZARR_CHUNKS}, into {path}")
    shutil.rmtree(path, ignore_errors=True)
    compressors = None
    if zstd:
        from zarr.codecs import ZstdCodec

        compressors = ZstdCodec(level=3)
    arr = zarr.create_array(store=LocalStore(path), shape=shape, chunks=ZARR_CHUNKS, dtype="uint8",
                            compressors=compressors, fill_value=0, zarr_format=fmt)
    rows = ZARR_CHUNKS[0]
    c = zlib.crc32(b"array")
    for i in range(shape[0] // rows):
        block = np.frombuffer(_gen(name, i, rows * shape[1]), dtype=np.uint8).reshape(rows, shape[1])
        if zstd:
            block = block & 0x0F
        arr[i * rows:(i + 1) * rows, :] = block
        c = zlib.crc32(block, c)
    nchunks = (shape[0] // ZARR_CHUNKS[0]) * (shape[1] // ZARR_CHUNKS[1])
    entry = {"shape": list(shape), "chunks": list(ZARR_CHUNKS), "path": path, "crc": c,
             "nchunks": nchunks, "nbytes": shape[0] * shape[1]}
    if fmt == 3:
        entry["chunk_crcs"] = chunk_checksum(path)
    self.manifest[f"{name}-{which}"] = entry
    self._save()
    return entry


def chunk_checksum(path):
    """Checksum of the chunk files (c/...) of a zarr 3 array directory, keyed by relative path."""
    crcs = []
    base = os.path.join(path, "c")
    for d, _, files in os.walk(base):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                crcs.append(object_crc(os.path.relpath(p, path), fh.read()))
    return combine(crcs)


Data.ensure_zarr3 = lambda self, which, log=print: _zarr_ensure(self, 3, which, log)
Data.ensure_zarr3z = lambda self, which, log=print: _zarr_ensure(self, 3, which, log, zstd=True)
Data.ensure_zarr2 = lambda self, which, log=print: _zarr_ensure(self, 2, which, log)


LIST_FULL = 100_000
LIST_QUICK = 20_000


def _listing_ensure(self, n, log=print):
    """A directory bucket/list/<n>/ of n empty files; returns (dir, crc of the sorted names)."""
    d = os.path.join(self.bucket, "list", str(n))
    names = [f"k{i:06d}" for i in range(n)]
    entry = self.manifest.get(f"list-{n}")
    if not entry or not os.path.isdir(d) or len(os.listdir(d)) != n:
        log(f"  data: creating {n:,} empty files in {d}")
        os.makedirs(d, exist_ok=True)
        for k in names:
            p = os.path.join(d, k)
            if not os.path.exists(p):
                open(p, "wb").close()
        self.manifest[f"list-{n}"] = {"n": n}
        self._save()
    return d, zlib.crc32("\n".join(sorted(names)).encode())


Data.ensure_listing = _listing_ensure
