"""file:// specifics: symbolic links never lead a store outside its root, crashed writes
leave nothing (or, without O_TMPFILE, recognisable temporary files that rmdir/clear remove
once stale), durable=True.

The policy (csrc/backends/file.c): reads follow a link whose target lies beneath the root;
writes replace the key's own name (never through a link) in directories resolved beneath
the root; listing, delete and rmdir never follow a link."""
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from cloudfiles_store import CloudFilesStore, errors


@pytest.fixture
def escape(tmp_path):
    """root/data/link -> outside/ and root/data/flink -> outside/f, outside holding f."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "data").mkdir(parents=True)
    outside.mkdir()
    (outside / "f").write_bytes(b"secret")
    (root / "data" / "link").symlink_to(outside)
    (root / "data" / "flink").symlink_to(outside / "f")
    (root / "data" / "own").write_bytes(b"mine")
    store = CloudFilesStore(f"file://{root}")
    yield store, root, outside
    store.close()


def test_link_out_of_the_root_is_not_read(escape):
    store, _, _ = escape
    for key in ("data/link/f", "data/flink"):
        with pytest.raises(errors.StorageIOError, match="symbolic link leads outside"):
            store[key]
        with pytest.raises(errors.StorageIOError):
            store.getsize(key)
    assert store.getitems(["data/own"]) == {"data/own": b"mine"}


def test_link_out_of_the_root_is_not_written_through(escape):
    store, root, outside = escape
    with pytest.raises(errors.StorageIOError, match="symbolic link leads outside"):
        store["data/link/x"] = b"planted"
    assert sorted(os.listdir(outside)) == ["f"]
    # a write to a key that is itself a link replaces the link, never its target
    store["data/flink"] = b"replaced"
    assert (outside / "f").read_bytes() == b"secret"
    assert not (root / "data" / "flink").is_symlink()
    assert store["data/flink"] == b"replaced"


def test_links_are_not_listed_nor_descended(escape):
    store, _, _ = escape
    assert store.listdir("data") == ["own"]
    assert store.listdir("data/link") == []
    assert [k for k in store] == ["data/own"]


def test_delete_and_rmdir_never_go_through_a_link(escape):
    store, root, outside = escape
    with pytest.raises(errors.StorageIOError, match="crosses a symbolic link"):
        del store["data/link/f"]
    store.rmdir("data/link")
    store.rmdir("data")
    store.clear()
    assert (outside / "f").read_bytes() == b"secret"
    assert (root / "data" / "flink").is_symlink()  # not listed, so not cleared
    # deleting a key that is a link removes the link alone
    del store["data/flink"]
    assert not os.path.lexists(root / "data" / "flink")
    assert (outside / "f").read_bytes() == b"secret"


def test_links_inside_the_root_are_followed_for_reads(tmp_path):
    root = tmp_path / "root"
    (root / "a" / "real").mkdir(parents=True)
    (root / "a" / "real" / "f").write_bytes(b"x")
    (root / "a" / "alias").symlink_to("real")
    (root / "a" / "lnk").symlink_to("real/f")
    with CloudFilesStore(str(root)) as store:
        assert store["a/alias/f"] == b"x"
        assert store["a/lnk"] == b"x"
        assert store.getsize("a/lnk") == 1
        store["a/alias/g"] = b"y"  # its directory resolves beneath the root
        assert (root / "a" / "real" / "g").read_bytes() == b"y"
        with pytest.raises(errors.StorageIOError, match="crosses a symbolic link"):
            del store["a/alias/f"]
        assert (root / "a" / "real" / "f").exists()
        store["a/lnk"] = b"new"  # replaces the link
        assert (root / "a" / "real" / "f").read_bytes() == b"x"
        assert store.listdir("a") == ["lnk", "real"]


def _temp_files(root):
    return sorted(p for p in root.rglob(".cfs-tmp-*"))


def test_stale_temporary_files_are_removed_by_rmdir_and_clear(tmp_path):
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    stale, fresh, top = root / "d" / ".cfs-tmp-1-aaaa", root / "d" / ".cfs-tmp-2-bbbb", root / ".cfs-tmp-3-cccc"
    for p in (stale, fresh, top):
        p.write_bytes(b"partial")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    os.utime(top, (old, old))
    with CloudFilesStore(str(root), stale_temp_seconds=3600) as store:
        store["d/k"] = b"v"
        assert list(store) == ["d/k"]
        store.rmdir("d")
        assert _temp_files(root) == sorted([fresh, top])  # an idle one goes; a live writer's stays
        store.clear()
        assert _temp_files(root) == [fresh]


def _preload(tmp_path, name):
    """Build tests/c/backends/NAME.c into a preload library; the environment to run with it
    (after whatever is preloaded already: the sanitizer runtimes under .ci/sanitize)."""
    lib = tmp_path / f"{name}.so"
    src = pathlib.Path(__file__).parent / "c" / "backends" / f"{name}.c"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o", str(lib), str(src), "-ldl"],
                   check=True)
    return dict(os.environ, LD_PRELOAD=f"{os.environ.get('LD_PRELOAD', '')} {lib}".strip())


def _kill_mid_write(root, env=None):
    """Run a child that writes 1 GiB to key "big" under root; kill it once it has the new
    file open (its fd shows a path under root) and before it is done. Returns its pid."""
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from cloudfiles_store import CloudFilesStore
        s = CloudFilesStore({str(root)!r})
        s["big"] = bytes(1 << 30)
    """)], env=env)
    caught = False
    try:
        deadline = time.time() + 60
        while not caught and time.time() < deadline and child.poll() is None:
            try:
                fds = os.listdir(f"/proc/{child.pid}/fd")
            except FileNotFoundError:
                break
            for fd in fds:
                try:
                    target = os.readlink(f"/proc/{child.pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith(str(root) + "/") and not target.endswith(str(root)):
                    caught = os.path.isdir(target) is False
                    break
            else:
                time.sleep(0.002)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    assert caught and not (root / "big").exists(), "the write finished before it could be killed"
    return child.pid


def test_a_killed_write_leaves_nothing(tmp_path):
    """The new file is unnamed (O_TMPFILE) until it is complete: a writer killed mid-way
    leaves no file and no key."""
    root = tmp_path / "root"
    root.mkdir()
    _kill_mid_write(root)
    assert [p for p in root.rglob("*") if not p.is_dir()] == []
    with CloudFilesStore(str(root)) as store:
        assert list(store) == [] and "big" not in store


def test_without_tmpfile_a_killed_write_leaves_a_recognisable_file_that_clear_removes(tmp_path):
    """Where the filesystem has no unnamed files, the new file has a hidden temporary name:
    never listed, removed by clear once stale."""
    root = tmp_path / "root"
    root.mkdir()
    pid = _kill_mid_write(root, _preload(tmp_path, "no_tmpfile"))
    left = _temp_files(root)
    assert left and left[0].name.startswith(f".cfs-tmp-{pid}-")
    with CloudFilesStore(str(root), stale_temp_seconds=0) as store:
        assert list(store) == [] and store.listdir("") == []
        store.clear()
    assert _temp_files(root) == []


WRITE_CHECK = textwrap.dedent("""
    import os, sys
    from cloudfiles_store import CloudFilesStore, errors
    s = CloudFilesStore(sys.argv[1])
    s["a/b"] = b"1"
    s["a/b"] = b"22"                      # replaces
    s.setitems({"a/b": b"333", "c": b"4"})
    assert s["a/b"] == b"333" and s["c"] == b"4"
    s.put("a/b", b"x" * 1000, compress="gzip")   # stored as a/b.gz, a/b removed
    assert sorted(os.listdir(os.path.join(sys.argv[1], "a"))) == ["b.gz"], os.listdir(os.path.join(sys.argv[1], "a"))
    assert s["a/b"] == b"x" * 1000
    print("writes ok", sorted(n for n in os.listdir(sys.argv[1])))
""")


@pytest.mark.parametrize("preload", [None, "no_tmpfile"])
def test_writes_create_and_replace_with_and_without_tmpfile(tmp_path, preload):
    """A new key is linked into place, an existing one replaced by a rename, and an encoded
    variant replaces the plain file; the same with named temporary files; nothing left."""
    root = tmp_path / "root"
    root.mkdir()
    env = _preload(tmp_path, preload) if preload else None
    run = subprocess.run([sys.executable, "-c", WRITE_CHECK, str(root)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "writes ok ['a', 'c']" in run.stdout, run.stdout + run.stderr
    assert _temp_files(root) == []


def test_durable_writes(tmp_path):
    with CloudFilesStore(str(tmp_path), durable=True) as store:
        store.setitems({f"k/{i}": bytes([i]) * 100 for i in range(20)})
        assert store.getitems([f"k/{i}" for i in range(20)]) == {f"k/{i}": bytes([i]) * 100 for i in range(20)}
    for bad in ({"durable": "sometimes"}, {"stale_temp_seconds": -1}):
        with pytest.raises(errors.OptionError):
            CloudFilesStore(str(tmp_path), **bad)


FALLBACK_CHECK = textwrap.dedent("""
    import os, sys
    from cloudfiles_store import CloudFilesStore, errors
    root, outside = sys.argv[1], sys.argv[2]
    s = CloudFilesStore(root)
    s["a/b/c"] = b"1"
    s["a/d"] = b"2"
    assert s["a/b/c"] == b"1" and sorted(s) == ["a/b/c", "a/d", "data/own"], sorted(s)
    del s["a/b/c"]
    s.rmdir("a")
    assert sorted(s) == ["data/own"]
    for key in ("data/link/f", "data/flink", "alias/own"):
        try:
            s[key]
        except errors.StorageIOError as e:
            assert "crosses a symbolic link" in str(e), e
        else:
            raise AssertionError(key + " was read through a link")
    try:
        s["data/link/x"] = b"planted"
    except errors.StorageIOError:
        pass
    else:
        raise AssertionError("written through a link")
    s.clear()
    assert sorted(os.listdir(outside)) == ["f"]
    print("fallback ok")
""")


def test_without_openat2_every_link_is_refused(escape, tmp_path):
    """On kernels without openat2 the backend walks with O_NOFOLLOW: stricter (no link is
    followed, not even one inside the root), never looser."""
    _, root, outside = escape
    (root / "alias").symlink_to("data")
    env = _preload(tmp_path, "no_openat2")
    run = subprocess.run([sys.executable, "-c", FALLBACK_CHECK, str(root), str(outside)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "fallback ok" in run.stdout, run.stdout + run.stderr


def test_a_write_under_a_file_is_an_error_not_a_missing_key(tmp_path):
    with CloudFilesStore(str(tmp_path)) as store:
        store["own"] = b"file"
        with pytest.raises(errors.StorageIOError, match="own/x"):
            store["own/x"] = b"under a file"
        with pytest.raises(KeyError):
            store["own/x"]
