"""A large object copied from a remote store into a file:// one goes straight into the new
file, range by range (cloudfiles_store/_transfer.py _stream_to_files), through the file
backend's piece-by-piece writer (Store._new_file, csrc/python/newfile.c). Real servers:
the fault server, a local directory."""
import gzip
import os
import threading
import uuid

import pytest

from cloudfiles_store import BatchError, CloudFilesStore, InvalidKeyError, StorageIOError
from cloudfiles_store import _transfer
from cloudfiles_store.errors import ProtocolError

MIB = 1024 * 1024


@pytest.fixture
def small_ranges(monkeypatch):
    """Objects of 1 MiB or more count as large, read in 1 MiB ranges, 2 at a time."""
    monkeypatch.setattr(_transfer, "LARGE_OBJECT", MIB)
    monkeypatch.setattr(_transfer, "RANGE_PART", MIB)
    monkeypatch.setattr(_transfer, "STREAM_RANGES", 2)


def _files(root):
    """Every file under root, relative paths (a temporary file left would show)."""
    return sorted(os.path.relpath(os.path.join(d, n), root)
                  for d, _dirs, names in os.walk(root) for n in names)


class _Progress:
    def __init__(self, on_piece=None):
        self.calls = []
        self.lock = threading.Lock()
        self.on_piece = on_piece

    def __call__(self, objects, nbytes):
        with self.lock:
            self.calls.append((objects, nbytes))
        if objects == 0 and self.on_piece:
            self.on_piece(nbytes)


def test_large_object_streams_into_the_file(tmp_path, fault_server, small_ranges):
    base = f"/{uuid.uuid4().hex}"
    big = os.urandom(5 * MIB + 17)
    fault_server.put(f"{base}/d/big", big)
    fault_server.put(f"{base}/small", b"tiny")
    src = CloudFilesStore(fault_server.url + base)
    dest = CloudFilesStore(f"file://{tmp_path}")
    progress = _Progress()
    summary = src.transfer_to(dest, keys=[("d/big", "d/big", len(big)), ("small", "small", 4)],
                              progress=progress)
    assert summary == {"objects": 2, "bytes": len(big) + 4, "server_side": 0}
    assert (tmp_path / "d" / "big").read_bytes() == big
    assert _files(tmp_path) == ["d/big", "small"]  # no temporary file anywhere
    gets = fault_server.requests(f"{base}/d/big", method="GET")
    assert len(gets) == 6 and all(fault_server.header(r, "range") for r in gets)
    # at most STREAM_RANGES ranges read at once: the object is never held whole
    assert fault_server.max_concurrency(f"{base}/d/") <= 2
    # bytes move as the pieces land; the object counts once it is in place
    pieces = [n for objects, n in progress.calls if objects == 0]
    assert len(pieces) == 6 and sum(pieces) == len(big)
    assert sum(o for o, _n in progress.calls) == 2
    assert sum(n for _o, n in progress.calls) == len(big) + 4


def test_object_that_changes_mid_copy_fails_and_leaves_nothing(tmp_path, fault_server,
                                                               small_ranges):
    base = f"/{uuid.uuid4().hex}"
    big = os.urandom(4 * MIB)
    fault_server.put(f"{base}/big", big)
    fault_server.put(f"{base}/small", b"tiny")
    dest = CloudFilesStore(f"file://{tmp_path}")
    dest["big"] = b"the older version"
    src = CloudFilesStore(fault_server.url + base)

    # once the first piece is written, the object shrinks: a later range comes back short
    def shrink(_nbytes):
        fault_server.put(f"{base}/big", big[: 2 * MIB + 5])

    with pytest.raises(BatchError) as ei:
        src.transfer_to(dest, keys=[("big", "big", len(big)), ("small", "small", 4)],
                        progress=_Progress(on_piece=shrink))
    assert ei.value.failed == ["big"]
    (err,) = ei.value.errors
    assert isinstance(err, ProtocolError) and "changed while it was copied" in str(err)
    assert err.key == "big" and err.url == src.url
    assert dest["big"] == b"the older version" and dest["small"] == b"tiny"
    assert _files(tmp_path) == ["big", "small"]

    # larger than listed: the last range's extra byte shows it; nothing written either
    fault_server.put(f"{base}/big", big)
    with pytest.raises(BatchError) as ei:
        src.transfer_to(dest, keys=[("big", "big2", len(big) - 5)])
    assert ei.value.failed == ["big"] and "changed while it was copied" in str(ei.value.errors[0])
    # smaller than listed: a range past the end fails
    with pytest.raises(BatchError) as ei:
        src.transfer_to(dest, keys=[("big", "big3", len(big) + MIB)])
    assert ei.value.failed == ["big"]
    # gone: a KeyError for the key
    with pytest.raises(BatchError) as ei:
        src.transfer_to(dest, keys=[("gone", "gone", 3 * MIB)])
    assert ei.value.failed == ["gone"] and isinstance(ei.value.errors[0], KeyError)
    assert _files(tmp_path) == ["big", "small"]


def test_large_gzip_object_arrives_as_its_gz_file(tmp_path, fault_server, small_ranges):
    base = f"/{uuid.uuid4().hex}"
    value = os.urandom(3 * MIB).hex().encode()  # gzip takes it to about half
    stored = gzip.compress(value, compresslevel=1, mtime=0)
    assert len(stored) > 2 * MIB  # several ranges
    fault_server.put(f"{base}/big", stored, headers=[("Content-Encoding", "gzip")])
    dest = CloudFilesStore(f"file://{tmp_path}")
    dest["big"] = b"a plain older version"
    src = CloudFilesStore(fault_server.url + base)
    assert src.transfer_to(dest, keys=[("big", "big", len(stored))]) == {
        "objects": 1, "bytes": len(stored), "server_side": 0}
    assert _files(tmp_path) == ["big.gz"]  # the plain variant removed
    assert (tmp_path / "big.gz").read_bytes() == stored
    assert dest.get_raw("big") == (stored, "gzip") and dest["big"] == value
    gets = fault_server.requests(f"{base}/big", method="GET")
    assert len(gets) == -(-len(stored) // MIB)


def test_one_source_key_to_two_destination_keys(tmp_path, fault_server, small_ranges):
    base = f"/{uuid.uuid4().hex}"
    big = os.urandom(2 * MIB)  # a whole number of ranges: the last asks one byte more
    fault_server.put(f"{base}/big", big)
    src = CloudFilesStore(fault_server.url + base)
    dest = CloudFilesStore(f"file://{tmp_path}")
    assert src.transfer_to(dest, keys=[("big", "a", len(big)), ("big", "b/c", len(big))]) == {
        "objects": 2, "bytes": 2 * len(big), "server_side": 0}
    assert (tmp_path / "a").read_bytes() == big and (tmp_path / "b" / "c").read_bytes() == big
    assert len(fault_server.requests(f"{base}/big", method="GET")) == 2  # read once


def test_new_file_writes_pieces_and_commits(tmp_path):
    store = CloudFilesStore(f"file://{tmp_path}", durable=True)
    f = store._new_file("a/b/k")
    assert f.key == "a/b/k" and not f.closed
    assert _files(tmp_path) == []  # unnamed until committed
    os.pwrite(f.fileno(), b"world", 5)
    os.pwrite(f.fileno(), b"hello", 0)
    f.commit()
    assert f.closed and store["a/b/k"] == b"helloworld"
    assert oct((tmp_path / "a" / "b" / "k").stat().st_mode & 0o777) == "0o644"
    with store._new_file("a/b/k") as f:  # replaces it, as key.zstd, the plain file removed
        os.pwrite(f.fileno(), b"zstd bytes", 0)
        f.commit("zstd")
    assert _files(tmp_path) == ["a/b/k.zstd"]
    assert (tmp_path / "a" / "b" / "k.zstd").read_bytes() == b"zstd bytes"


def test_new_file_misuse_gives_clear_errors(tmp_path, fault_server):
    store = CloudFilesStore(f"file://{tmp_path}/root")
    f = store._new_file("k")
    os.pwrite(f.fileno(), b"x", 0)
    with pytest.raises(ValueError, match="encoding 'lz4'"):
        f.commit("lz4")
    with pytest.raises(TypeError, match="encoding must be a str"):
        f.commit(1)
    f.commit()
    with pytest.raises(ValueError, match="'k' is already committed"):
        f.commit()
    with pytest.raises(ValueError, match="'k' is already committed"):
        f.fileno()
    f.discard()  # nothing left to discard: does nothing
    assert store["k"] == b"x"

    f = store._new_file("j")
    f.discard()
    with pytest.raises(ValueError, match="'j' is already discarded"):
        f.commit()
    assert "j" not in store

    with pytest.raises(RuntimeError):  # an exception in a with block discards it
        with store._new_file("j") as f:
            os.pwrite(f.fileno(), b"half", 0)
            raise RuntimeError
    with store._new_file("j") as f:  # so does leaving it without commit()
        os.pwrite(f.fileno(), b"half", 0)
    assert f.closed and _files(tmp_path / "root") == ["k"]

    for bad in ("../x", "a/../../x", "/abs", ""):
        with pytest.raises(InvalidKeyError):
            store._new_file(bad)
    # a link leading outside the root is never written through
    os.symlink(tmp_path, tmp_path / "root" / "out")
    with pytest.raises(StorageIOError, match="outside the store's root") as ei:
        store._new_file("out/x")
    assert ei.value.key == "out/x" and ei.value.operation == "put"
    assert str(tmp_path / "root") in ei.value.url
    assert not (tmp_path / "x").exists()

    for other in (CloudFilesStore(f"mem://{uuid.uuid4().hex}"),
                  CloudFilesStore(fault_server.url + "/x")):
        with pytest.raises(TypeError, match="only a file:// store"):
            other._new_file("k")
    store.close()
    with pytest.raises(ValueError, match="closed store"):
        store._new_file("k")


def test_new_file_outlives_its_store(tmp_path):
    """A NewFile holds nothing of the store: it commits after the store is gone, and one
    dropped uncommitted leaves nothing."""
    store = CloudFilesStore(f"file://{tmp_path}")
    f = store._new_file("k")
    g = store._new_file("g")
    os.pwrite(g.fileno(), b"dropped", 0)
    del store, g
    os.pwrite(f.fileno(), b"kept", 0)
    f.commit()
    assert _files(tmp_path) == ["k"] and (tmp_path / "k").read_bytes() == b"kept"


def test_cli_bar_moves_by_ranges_during_one_large_download(fault_server, tmp_path):
    """`cp URL/big ./dir/` of a 96 MiB object (6 ranges of 16 MiB, the real sizes): the
    bar moves as ranges land, not 0% until the end."""
    import re

    from test_cli import _on_a_terminal
    base = f"/{uuid.uuid4().hex}"
    big = os.urandom(96 * MIB)
    fault_server.put(f"{base}/big.bin", big)
    # each range takes 0.4 s: the two groups of ranges land apart
    fault_server.add_faults(f"{base}/big.bin", ["delay:0.4"] * 8)
    try:
        status, text = _on_a_terminal("cp", f"{fault_server.url}{base}/big.bin",
                                      str(tmp_path / "dir") + "/")
    finally:
        fault_server.delete(f"{base}/big.bin")
    assert status == 0, text
    percents = [int(p) for p in re.findall(r"copied:\s+(\d+)%", text)]
    assert any(0 < p < 100 for p in percents), text
    assert percents == sorted(percents) and percents[-1] == 100, text
    assert (tmp_path / "dir" / "big.bin").read_bytes() == big
    assert _files(tmp_path / "dir") == ["big.bin"]
    gets = fault_server.requests(f"{base}/big.bin", method="GET")
    assert len(gets) == 6 and all(fault_server.header(r, "range") for r in gets)


def test_a_failed_write_fails_that_key_and_leaves_nothing(tmp_path, fault_server, small_ranges):
    """A write the filesystem refuses (here a file-size limit: EFBIG) fails the key with a
    StorageIOError naming it; the older version stays, and no temporary file."""
    import resource
    import signal
    base = f"/{uuid.uuid4().hex}"
    big = os.urandom(4 * MIB)
    fault_server.put(f"{base}/big", big)
    src = CloudFilesStore(fault_server.url + base)
    dest = CloudFilesStore(f"file://{tmp_path}")
    dest["big"] = b"older"
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (3 * MIB, limits[1]))
    try:
        with pytest.raises(BatchError) as ei:
            src.transfer_to(dest, keys=[("big", "big", len(big))])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    (err,) = ei.value.errors
    assert ei.value.failed == ["big"] and isinstance(err, StorageIOError)
    assert err.key == "big" and err.operation == "put" and "cannot write" in str(err)
    assert dest["big"] == b"older" and _files(tmp_path) == ["big"]
