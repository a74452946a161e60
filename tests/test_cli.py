"""The command-line tool, run as a separate process against real stores (issue 14)."""

import json
import os
import re
import subprocess
import sys
import uuid

import pytest


def cli(*args, input=None):
    return subprocess.run([sys.executable, "-m", "cloudfiles_store", *args], input=input,
                          capture_output=True, timeout=120)


def ok(*args, input=None):
    run = cli(*args, input=input)
    assert run.returncode == 0, (args, run.stderr.decode())
    return run


def one_line_error(run, status=1):
    err = run.stderr.decode()
    assert run.returncode == status, err
    assert b"Traceback" not in run.stderr, err
    # one line per failure (a summary such as "copied 0 of 1 objects" may follow)
    assert [line.startswith("cloudfiles-store") for line in err.splitlines()][:2] in (
        [True], [True, False]), err
    return err


@pytest.fixture(params=["file", "http"])
def url(request, tmp_path, nginx_url):
    return f"file://{tmp_path}/tree" if request.param == "file" else nginx_url


def _opts(options):
    return [a for k, v in options.items() for a in ("-o", f"{k}={v}")]


@pytest.fixture(params=["file", "http", "s3", "gs", "s3-seaweedfs"])
def remote(request, tmp_path):
    """(URL of a fresh prefix, [-o options it needs], [--dst-opt ...], bucket root URL)."""
    unique = uuid.uuid4().hex
    name = request.param
    if name == "file":
        return f"{tmp_path}/remote", [], [], None
    if name == "http":
        srv = request.getfixturevalue("nginx")
        return f"{srv.url}/{unique}", [], [], None
    if name == "gs":
        from conftest import GCS_BUCKET
        srv = request.getfixturevalue("gcs_server")
        opts = {"endpoint_url": srv.url}
        return (f"gs://{GCS_BUCKET}/{unique}", _opts(opts),
                [a for k, v in opts.items() for a in ("--dst-opt", f"{k}={v}")],
                f"gs://{GCS_BUCKET}")
    srv = request.getfixturevalue("moto_server" if name == "s3" else "seaweedfs_server")
    opts = srv.store_options()
    return (srv.url(unique), _opts(opts),
            [a for k, v in opts.items() for a in ("--dst-opt", f"{k}={v}")], srv.url())


def test_put_cat_ls_du_rm(url):
    assert cli("put", url, "d/a b", input=b"first").returncode == 0
    assert cli("put", url, "d/sub/c", input=b"second!").returncode == 0
    assert cli("cat", url, "d/a b").stdout == b"first"
    assert cli("ls", url, "d").stdout.decode().split("\n")[:-1] == ["a b", "sub"]
    assert cli("ls", "-r", url).stdout.decode().split("\n")[:-1] == ["d/a b", "d/sub/c"]
    assert cli("du", "-s", url, "d").stdout.decode().strip() == "12 bytes in 2 objects"
    assert cli("rm", "-r", url, "d/sub").returncode == 0
    assert cli("ls", "-r", url).stdout.decode().split("\n")[:-1] == ["d/a b"]


def test_cp_copies_a_tree_between_backends(url, tmp_path):
    for i in range(50):
        assert cli("put", url, f"t/{i}", input=bytes([i]) * (i + 1)).returncode == 0
    dst = f"file://{tmp_path}/copy"
    run = cli("--concurrency", "8", "cp", "-r", url, dst)
    assert run.returncode == 0, run.stderr
    for i in (0, 17, 49):
        assert cli("cat", dst, f"t/{i}").stdout == bytes([i]) * (i + 1)
    assert cli("du", "-s", dst).stdout.decode().strip() == f"{sum(range(1, 51))} bytes in 50 objects"


def test_errors_are_one_line_and_exit_1(url):
    run = cli("cat", url, "missing")
    assert run.returncode == 1 and b"no such" in run.stderr and b"missing" in run.stderr
    run = cli("cat", "nosuch://x", "k")
    assert run.returncode == 1 and b"unsupported URL" in run.stderr
    run = cli("-o", "bogus=1", "ls", url)
    assert run.returncode == 1 and b"unknown option bogus" in run.stderr


# ------------------------------------------------------------------ 1. safety and errors

def _tree(remote, n=3):
    url, opts, _, _ = remote
    for i in range(n):
        ok("put", url, f"p/k{i}", *opts, input=b"x" * (i + 1))
    ok("put", url, "top", *opts, input=b"t")
    return url, opts


def _keys(url, opts):
    return cli("ls", "-r", url, *opts).stdout.decode().split("\n")[:-1]


def test_rm_needs_r_for_a_prefix_and_force_for_a_root(remote, tmp_path):
    url, opts = _tree(remote)
    before = _keys(url, opts)
    err = one_line_error(cli("rm", f"{url}/p", *opts))
    assert "needs -r" in err and f"{url}/p" in err
    assert _keys(url, opts) == before
    # a whole bucket (or the root of a local tree) wants --force
    if remote[3]:
        err = one_line_error(cli("rm", "-r", remote[3], *opts))
        assert "--force" in err
    # a pattern matching every object at the root is refused too
    if remote[3]:
        err = one_line_error(cli("rm", "-r", remote[3] + "/*", *opts))
        assert "--force" in err
    assert _keys(url, opts) == before
    # the root of the filesystem is never walked nor deleted, --force or not
    for args in (("/",), ("/*",), ("file:///**",)):
        err = one_line_error(cli("rm", "-r", "--force", "--dry-run", *args))
        assert "root of the filesystem" in err
    # --dry-run lists what would go and removes nothing
    run = ok("rm", "-r", "--dry-run", f"{url}/p", *opts)
    assert run.stdout.decode().count("would remove") == 3
    assert _keys(url, opts) == before
    ok("rm", "-r", f"{url}/p", *opts)
    assert _keys(url, opts) == ["top"]
    ok("rm", f"{url}/top", *opts)  # one object: no -r needed
    assert _keys(url, opts) == []


def test_missing_local_file_and_missing_key_are_one_line(tmp_path, nginx_url):
    err = one_line_error(cli("put", nginx_url, "k", str(tmp_path / "nope")))
    assert str(tmp_path / "nope") in err
    err = one_line_error(cli("cp", str(tmp_path / "nope"), nginx_url + "/"))
    assert str(tmp_path / "nope") in err
    err = one_line_error(cli("cat", nginx_url, "nokey"))
    assert f"{nginx_url}/nokey" in err


def test_missing_bucket_is_one_line(moto_server, tmp_path):
    opts = _opts(moto_server.store_options())
    (tmp_path / "f").write_bytes(b"x")
    for args in (("ls", "s3://no-such-bucket-cli/p"),
                 ("cp", str(tmp_path / "f"), "s3://no-such-bucket-cli/k"),
                 ("cp", "-r", str(tmp_path), "s3://no-such-bucket-cli/d/")):
        err = one_line_error(cli(*args, *opts))
        assert "no-such-bucket-cli" in err
    run = cli("ls", "s3://no-such-bucket-cli/p", *opts, "--debug")
    assert run.returncode == 1 and b"Traceback" in run.stderr


def test_a_batch_lists_every_failure_and_completes_the_rest(fault_server, tmp_path):
    base = f"/cli-{uuid.uuid4().hex}"
    for i in range(6):
        fault_server.put(f"{base}/t/{i}", bytes([i]) * 10)
    for bad in (2, 4):
        fault_server.add_faults(f"{base}/t/{bad}", ["403"] * 4)
    run = cli("cp", "-r", "--retries", "1", fault_server.url + base + "/t", str(tmp_path / "o"))
    err = run.stderr.decode()
    assert run.returncode == 1 and "Traceback" not in err
    assert f"{base}/t/2" in err and f"{base}/t/4" in err
    assert sorted(os.listdir(tmp_path / "o")) == ["0", "1", "3", "5"]
    assert "copied 4 of 6 objects" in err


def test_mem_is_refused_with_the_reason(tmp_path):
    for args in (("put", "mem://x", "k"), ("ls", "mem://x"), ("cp", str(tmp_path), "mem://x/")):
        err = one_line_error(cli(*args, input=b""), status=2)
        assert "mem://" in err and "one process" in err


def test_usage_errors_exit_2():
    assert cli().returncode == 2
    assert cli("frobnicate").returncode == 2
    assert cli("cp", "onlyone").returncode == 2
    assert cli("ls", "x", "-o", "noequals").returncode == 2


# ------------------------------------------------------------------ 2. options

def test_options_anywhere_and_per_side(remote, tmp_path):
    url, opts, dst_opts, _ = remote
    (tmp_path / "f.txt").write_bytes(b"payload")
    # global options after the command, even between its arguments
    ok("--concurrency", "4", "cp", str(tmp_path / "f.txt"), *dst_opts, url + "/f.txt", "-q")
    assert ok("cat", url + "/f.txt", *opts, "--retries", "2").stdout == b"payload"
    ok("ls", url, *opts, "--concurrency", "3")
    if dst_opts:
        # -o goes to the sides whose backend takes it (the local side does not want an
        # endpoint); an option no side takes is still an error
        ok("cp", str(tmp_path / "f.txt"), url + "/g", *opts)
        err = one_line_error(cli("cp", str(tmp_path / "f.txt"), url + "/h", *opts,
                                 "-o", "bogus=1"))
        assert "unknown option bogus" in err
        back = [a.replace("--dst-opt", "--src-opt") for a in dst_opts]
        ok("cp", url + "/f.txt", str(tmp_path / "back.txt"), *back)
        assert (tmp_path / "back.txt").read_bytes() == b"payload"


def test_version_and_json():
    run = ok("--version")
    assert run.stdout.decode().startswith("cloudfiles-store ")
    from cloudfiles_store import __version__
    assert run.stdout.decode().split()[1] == __version__
    assert ok("ls", "--version").stdout == run.stdout


def test_json_lines_parse(remote, tmp_path):
    url, opts = _tree(remote)
    for args in (("ls", "-l", url), ("ls", "-r", url), ("du", url), ("du", "-s", url),
                 ("cp", "-r", f"{url}/p", str(tmp_path / "j")), ("rm", "-r", f"{url}/p")):
        run = ok("--json", *args, *opts)
        lines = run.stdout.decode().splitlines()
        assert lines, args
        records = [json.loads(line) for line in lines]
        assert all(isinstance(r, dict) for r in records)
    assert {r["op"] for r in records} == {"removed"} and len(records) == 3
    run = ok("--json", "cp", "-r", str(tmp_path / "j"), f"{url}/q", *remote[2])
    records = [json.loads(line) for line in run.stdout.decode().splitlines()]
    assert len(records) == 3 and {r["op"] for r in records} == {"copied"}
    assert all(r["dst"].startswith(url) or r["dst"].startswith("/") for r in records)
    run = cli("--json", "cat", url + "/none", *opts)
    assert run.returncode == 1 and "error" in json.loads(run.stderr.decode().splitlines()[0])


# ------------------------------------------------------------------ 3. cp and mv

def test_cp_every_direction(remote, tmp_path):
    url, opts, _, _ = remote
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha")
    (src / "sub" / "b.bin").write_bytes(b"beta" * 1000)
    # a single file to a "directory" URL: the key is the file's name
    ok("cp", str(src / "a.txt"), url + "/dir/", *opts)
    assert ok("cat", url + "/dir/a.txt", *opts).stdout == b"alpha"
    # file -> object under a new name; object -> file; object -> object
    ok("cp", str(src / "a.txt"), url + "/named", *opts)
    ok("cp", url + "/named", str(tmp_path / "out.txt"), *opts)
    assert (tmp_path / "out.txt").read_bytes() == b"alpha"
    ok("cp", url + "/named", url + "/copied", *opts)
    assert ok("cat", url + "/copied", *opts).stdout == b"alpha"
    # a directory to a prefix and back
    err = one_line_error(cli("cp", str(src), url + "/tree", *opts))
    assert "-r" in err
    ok("cp", "-r", str(src), url + "/tree", *opts)
    assert sorted(_keys(url + "/tree", opts)) == ["a.txt", "sub/b.bin"]
    ok("cp", "-r", url + "/tree", str(tmp_path / "back"), *opts)
    assert (tmp_path / "back" / "sub" / "b.bin").read_bytes() == b"beta" * 1000
    # stdin and stdout
    ok("cp", "-", url + "/fromstdin", *opts, input=b"piped")
    assert ok("cp", url + "/fromstdin", "-", *opts).stdout == b"piped"


def test_server_side_copy_within_one_bucket(moto_server):
    from cloudfiles_store import CloudFilesStore
    url = moto_server.url(uuid.uuid4().hex)
    opts = _opts(moto_server.store_options())
    with CloudFilesStore(moto_server.url(), **moto_server.store_options()) as s:
        assert "server_copy" in s.capabilities
    for i in range(5):
        ok("put", url, f"a/{i}", *opts, input=b"v%d" % i)
    run = ok("cp", "-r", url + "/a", url + "/b", *opts)
    assert "copied 5 objects" in run.stderr.decode()
    assert ok("cat", url + "/b/3", *opts).stdout == b"v3"


def test_wildcards_include_exclude_and_mv(remote, tmp_path):
    url, opts, _, _ = remote
    for name in ("x/1.txt", "x/2.txt", "x/3.log", "x/deep/4.txt", "y/5.txt"):
        ok("put", url, name, *opts, input=name.encode())
    ok("cp", url + "/x/*.txt", str(tmp_path / "star"), *opts)
    assert sorted(os.listdir(tmp_path / "star")) == ["1.txt", "2.txt"]
    ok("cp", url + "/**.txt", str(tmp_path / "all"), *opts)
    found = sorted(os.path.relpath(os.path.join(d, f), tmp_path / "all")
                   for d, _, fs in os.walk(tmp_path / "all") for f in fs)
    assert found == ["x/1.txt", "x/2.txt", "x/deep/4.txt", "y/5.txt"]
    ok("cp", url + "/x/[12].tx?", str(tmp_path / "cls"), *opts)
    assert sorted(os.listdir(tmp_path / "cls")) == ["1.txt", "2.txt"]
    err = one_line_error(cli("cp", url + "/x/*.nothing", str(tmp_path / "none"), *opts))
    assert "no objects matched" in err
    ok("cp", "-r", url + "/x", str(tmp_path / "inc"), "--include", "*.txt",
       "--exclude", "deep/*", *opts)
    found = sorted(os.path.relpath(os.path.join(d, f), tmp_path / "inc")
                   for d, _, fs in os.walk(tmp_path / "inc") for f in fs)
    assert found == ["1.txt", "2.txt"]
    # onto itself: refused, and mv does not delete the only copy
    for verb in ("cp", "mv"):
        err = one_line_error(cli(verb, url + "/y/5.txt", url + "/y/", *opts))
        assert "same object" in err
    assert ok("cat", url + "/y/5.txt", *opts).stdout == b"y/5.txt"
    # mv: the sources copied are deleted, the rest stay
    ok("mv", url + "/x/*.txt", url + "/moved/", *opts)
    assert sorted(_keys(url, opts)) == ["moved/1.txt", "moved/2.txt", "x/3.log",
                                        "x/deep/4.txt", "y/5.txt"]


# ------------------------------------------------------------------ 4. the other commands

def test_ls_du_cat_head_touch(remote):
    url, opts = _tree(remote)
    assert ok("ls", url, *opts).stdout.decode().split() == ["p", "top"]
    lines = ok("ls", "-l", url, *opts).stdout.decode().splitlines()
    # a prefix: the bytes below it; an object: size, last-modified (UTC), ETag, name
    assert lines[0].split() == ["6", "p/"]
    size, when, etag, name = lines[1].split()
    assert (size, name) == ("1", "top") and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", when)
    lines = ok("ls", "-lrh", url, *opts).stdout.decode().splitlines()
    assert lines[0].split()[:2] == ["1", "B"] and lines[0].split()[-1] == "p/k0"
    meta = json.loads(ok("head", "--meta", "--json", url + "/top", *opts).stdout)
    assert meta["size"] == 1 and meta["last_modified"].startswith(when[:-1])
    assert meta["etag"] == etag or (etag == "-" and url.startswith("http"))  # no ETag in nginx's index
    rows = [json.loads(x) for x in ok("ls", "-lr", "--json", url, *opts).stdout.splitlines()]
    assert {r["key"] for r in rows} == {"p/k0", "p/k1", "p/k2", "top"}
    assert all(r["last_modified"] for r in rows)
    assert all(r["etag"] for r in rows) or url.startswith("http")  # nginx's index has none
    assert ok("du", "-s", "-h", url, *opts).stdout.decode().strip() == "7 B in 4 objects"
    assert ok("du", url, *opts).stdout.decode().split("\n")[:-1] == [
        "           6  p/", "           1  top", "7 bytes in 4 objects"]
    ok("put", url, "r", *opts, input=b"0123456789")
    assert ok("cat", "--range", "2-4", url + "/r", *opts).stdout == b"234"
    assert ok("cat", url + "/r", "--range", "-3", *opts).stdout == b"789"
    assert ok("cat", url + "/r", "--range", "7-", *opts).stdout == b"789"
    assert ok("head", "-c", "4", url + "/r", *opts).stdout == b"0123"
    assert "size: 10" in ok("head", "--meta", url + "/r", *opts).stdout.decode()
    ok("touch", url + "/empty", *opts)
    assert ok("cat", url + "/empty", *opts).stdout == b""
    ok("touch", url + "/r", *opts)  # an existing object keeps its bytes
    assert ok("cat", url + "/r", *opts).stdout == b"0123456789"


def test_put_cp_with_metadata(remote, tmp_path):
    url, opts, dst_opts, _ = remote
    attrs = ["--content-type", "text/x-cli", "--cache-control", "no-cache",
             "--metadata", "owner=cli", "--metadata", "run=3"]
    if url.startswith(("s3://", "gs://")):
        ok("put", url, "a.bin", *attrs, *opts, input=b"1234")
        meta = json.loads(ok("head", "--meta", "--json", url + "/a.bin", *opts).stdout)
        assert (meta["content_type"], meta["cache_control"], meta["metadata"]) == (
            "text/x-cli", "no-cache", {"owner": "cli", "run": "3"})
        text = ok("head", "--meta", url + "/a.bin", *opts).stdout.decode().splitlines()
        assert "content_type: text/x-cli" in text and "metadata.owner: cli" in text
        (tmp_path / "up").mkdir()
        (tmp_path / "up" / "f.json").write_bytes(b"{}")
        ok("cp", "-r", str(tmp_path / "up"), url + "/up/", "--metadata", "from=cp", *dst_opts)
        meta = json.loads(ok("head", "--meta", "--json", url + "/up/up/f.json", *opts).stdout)
        assert meta["content_type"] == "application/json" and meta["metadata"] == {"from": "cp"}
        # object -> object with new attributes: not a server-side copy, which keeps the old
        ok("cp", url + "/a.bin", url + "/b.bin", "--metadata", "k=v", *opts)
        meta = json.loads(ok("head", "--meta", "--json", url + "/b.bin", *opts).stdout)
        assert meta["metadata"] == {"k": "v"} and meta["content_type"] == "application/octet-stream"
    else:
        # a local directory and nginx's WebDAV keep only bytes: said, not dropped
        err = one_line_error(cli("put", url, "a.bin", "--metadata", "owner=cli", *opts, input=b"1"))
        assert "metadata" in err and "cannot store" in err
    one_line_error(cli("put", url, "a.bin", "--metadata", "owner", *opts, input=b"1"), status=2)
    err = one_line_error(cli("put", url, "a.bin", "--content-type", "a\rb", *opts, input=b"1"))
    assert "content_type" in err


def test_verify_and_sync(remote, tmp_path):
    url, opts, dst_opts, _ = remote
    src = tmp_path / "v"
    (src / "d").mkdir(parents=True)
    for name, body in (("a", b"aaaa"), ("b", b"bbbb"), ("d/c", b"cc")):
        (src / name).write_bytes(body)
    ok("cp", "-r", str(src) + "/", url + "/v", *opts)
    run = ok("verify", str(src), url + "/v", *dst_opts)
    assert "3 match, 0 differ" in run.stderr.decode()
    ok("put", url, "v/a", *opts, input=b"AAAA")      # same size, other bytes
    ok("put", url, "v/b", *opts, input=b"bb")        # other size
    ok("rm", url + "/v/d/c", *opts)                  # missing
    ok("put", url, "v/extra", *opts, input=b"e")
    run = cli("verify", str(src), url + "/v", *dst_opts)
    out = run.stdout.decode()
    assert run.returncode == 1
    assert "content" in out and "/v/a" in out and "size" in out and "/v/b" in out
    assert "missing" in out and "/v/d/c" in out
    run = ok("sync", "--dry-run", str(src), url + "/v", "--delete", *dst_opts)
    assert "would remove" in run.stdout.decode() and "/v/extra" in run.stdout.decode()
    ok("sync", str(src), url + "/v", "--delete", *dst_opts)
    # sync compares sizes: the same-size change to a stays, the rest is fixed
    assert sorted(_keys(url + "/v", opts)) == ["a", "b", "d/c"]
    assert ok("cat", url + "/v/b", *opts).stdout == b"bbbb"
    assert ok("cat", url + "/v/a", *opts).stdout == b"AAAA"
    ok("sync", "--checksum", str(src), url + "/v", *dst_opts)
    assert ok("cat", url + "/v/a", *opts).stdout == b"aaaa"
    ok("verify", str(src), url + "/v", *dst_opts)


# ------------------------------------------------------------------ 5. progress

def _on_a_terminal(*args) -> tuple[int, str]:
    """Run the tool with stdout and stderr on a pseudo-terminal 100 columns wide:
    (exit status, what it drew)."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:
        import fcntl
        import struct
        import termios
        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        os.execv(sys.executable, [sys.executable, "-m", "cloudfiles_store", *args])
    out = b""
    while True:
        r, _, _ = select.select([fd], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_progress_bar_on_a_terminal(tmp_path):
    src = tmp_path / "many"
    src.mkdir()
    for i in range(200):
        (src / f"f{i}").write_bytes(b"z" * 1000)
    status, text = _on_a_terminal("cp", "-r", str(src), str(tmp_path / "dst"))
    assert status == 0, text
    last = text.replace("\r", "\n").strip().splitlines()
    bar = [line for line in last if "copied" in line and "%" in line]
    assert bar, text
    assert "100%" in bar[-1] and "200/200 objects" in bar[-1], text
    assert len(os.listdir(tmp_path / "dst")) == 200


def test_no_progress_when_not_a_terminal(tmp_path):
    (tmp_path / "a").write_bytes(b"x")
    run = ok("cp", str(tmp_path / "a"), str(tmp_path / "b"))
    assert b"%" not in run.stderr
    run = ok("cp", str(tmp_path / "a"), str(tmp_path / "c"), "--quiet")
    assert run.stderr == b""


def _sigint_default():
    """In the tool's process before exec: SIGINT back to its default. A suite started in
    the background of a non-interactive shell inherits SIGINT ignored, and Python leaves an
    ignored SIGINT ignored (no KeyboardInterrupt): the tool would never see the Ctrl-C."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_exits_130_with_one_line(fault_server):
    """SIGINT while a read stalls: the tool gives the read up and exits at once with 130."""
    import signal
    import time

    fault_server.put("/cli-int/k", b"x" * 100_000)
    fault_server.add_faults("/cli-int/k", ["stall:30"])
    proc = subprocess.Popen([sys.executable, "-m", "cloudfiles_store", "cat",
                             fault_server.url + "/cli-int", "k"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_sigint_default)
    deadline = time.monotonic() + 30
    while not fault_server.requests("/cli-int/k") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fault_server.requests("/cli-int/k"), "the tool never sent its request"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert time.monotonic() - t0 < 5
    assert proc.returncode == 130 and err == b"cloudfiles-store: interrupted\n" and out == b""


def test_ctrl_c_during_a_tree_copy_exits_130(fault_server, tmp_path):
    """SIGINT while a batch copy waits on a stalled read: 130 at once, one line."""
    import signal
    import time

    base = f"/cli-int-{uuid.uuid4().hex}"
    for i in range(20):
        fault_server.put(f"{base}/t/{i}", b"y" * 100_000)
    fault_server.add_faults(f"{base}/t/7", ["stall:30"])
    proc = subprocess.Popen([sys.executable, "-m", "cloudfiles_store", "cp", "-r",
                             fault_server.url + base + "/t", str(tmp_path / "o")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_sigint_default)
    deadline = time.monotonic() + 30
    while not fault_server.requests(f"{base}/t/7") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fault_server.requests(f"{base}/t/7"), "the tool never sent its request"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert time.monotonic() - t0 < 5
    assert proc.returncode == 130 and err == b"cloudfiles-store: interrupted\n"


# ------------------------------------------------------------------ 6. --compress

COMPRESSIBLE = b"the same words again and again; " * 4000


@pytest.fixture(params=["moto_server", "seaweedfs_server"])
def s3srv(request):
    return request.getfixturevalue(request.param)


def _stored(srv, url, key):
    """(Content-Encoding, stored bytes) of s3://bucket/KEY below URL, as boto3 sees them
    (boto3 does not decode)."""
    bucket, _, prefix = url[len("s3://"):].partition("/")
    got = srv.client().get_object(Bucket=bucket, Key=f"{prefix}/{key}")
    return got.get("ContentEncoding"), got["Body"].read()


def test_cp_compress_to_s3_stores_the_encoding_and_reads_back_decoded(s3srv, tmp_path):
    import gzip

    import zstandard
    url = s3srv.url(uuid.uuid4().hex)
    opts = _opts(s3srv.store_options())
    dst_opts = [a.replace("-o", "--dst-opt") for a in opts]
    (tmp_path / "f.txt").write_bytes(COMPRESSIBLE)
    ok("cp", "--compress", "gzip", str(tmp_path / "f.txt"), url + "/f.txt", *dst_opts)
    enc, raw = _stored(s3srv, url, "f.txt")
    assert enc == "gzip" and len(raw) < len(COMPRESSIBLE) // 10
    assert gzip.decompress(raw) == COMPRESSIBLE
    assert ok("cat", url + "/f.txt", *opts).stdout == COMPRESSIBLE
    # a level, and an object -> object copy re-encoded (so not a copy on the server)
    ok("cp", "--compress", "zstd", "--compress-level", "19", url + "/f.txt", url + "/z", *opts)
    enc, raw = _stored(s3srv, url, "z")
    assert enc == "zstd" and zstandard.ZstdDecompressor().decompress(raw) == COMPRESSIBLE
    # none: stored plain; mv deletes the source
    ok("mv", "--compress", "none", url + "/z", url + "/plain", *opts)
    assert _stored(s3srv, url, "plain") == (None, COMPRESSIBLE)
    assert _keys(url, opts) == ["f.txt", "plain"]
    # put and stdin
    ok("put", "--compress", "br", url, "p", str(tmp_path / "f.txt"), *dst_opts)
    assert _stored(s3srv, url, "p")[0] == "br"
    ok("cp", "-", url + "/s", "--compress", "gzip", *opts, input=COMPRESSIBLE)
    assert _stored(s3srv, url, "s")[0] == "gzip"
    assert ok("cat", url + "/s", *opts).stdout == COMPRESSIBLE
    # sync writes with it too
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "a").write_bytes(COMPRESSIBLE)
    ok("sync", "--compress", "gzip", str(tmp_path / "tree"), url + "/synced", *dst_opts)
    assert _stored(s3srv, url, "synced/a")[0] == "gzip"
    # without --compress a copy keeps what the source stores (on file://, as K.gz);
    # --compress none writes the plain file
    ok("cp", url + "/f.txt", str(tmp_path / "back"), *opts)
    assert gzip.decompress((tmp_path / "back.gz").read_bytes()) == COMPRESSIBLE
    ok("cp", "--compress", "none", url + "/f.txt", str(tmp_path / "plain"), *opts)
    assert (tmp_path / "plain").read_bytes() == COMPRESSIBLE


def test_cp_compress_local_tree_to_file_store(tmp_path):
    import gzip
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(COMPRESSIBLE)
    (src / "sub" / "b.json").write_bytes(b'{"k": 1}' * 500)
    out = tmp_path / "out"
    ok("cp", "-r", "--compress", "gzip", str(src) + "/", f"file://{out}/")
    # CloudFiles' layout: the encoding in the file name
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "a.txt.gz", "sub/b.json.gz"]
    assert gzip.decompress((out / "a.txt.gz").read_bytes()) == COMPRESSIBLE
    assert ok("cat", str(out / "a.txt")).stdout == COMPRESSIBLE
    assert ok("ls", "-r", str(out)).stdout.decode().split() == ["a.txt", "sub/b.json"]
    # and back, decoded
    ok("cp", "-r", "--compress", "none", str(out) + "/", str(tmp_path / "plain") + "/")
    assert (tmp_path / "plain" / "sub" / "b.json").read_bytes() == b'{"k": 1}' * 500
    ok("put", "--compress", "zstd", str(out), "c", str(src / "a.txt"))
    assert (out / "c.zstd").exists() and ok("cat", str(out / "c")).stdout == COMPRESSIBLE


def test_compress_usage_errors(tmp_path):
    (tmp_path / "f").write_bytes(COMPRESSIBLE)
    dst = str(tmp_path / "g")
    err = one_line_error(cli("cp", "--compress-level", "3", str(tmp_path / "f"), dst), status=2)
    assert "--compress-level needs --compress" in err
    err = one_line_error(cli("cp", "--compress", "none", "--compress-level", "3",
                             str(tmp_path / "f"), dst), status=2)
    assert "--compress-level needs --compress" in err
    err = one_line_error(cli("cp", "--compress", "gzip", "--compress-level", "99",
                             str(tmp_path / "f"), dst), status=2)
    assert "level 99" in err and "gzip" in err
    run = cli("cp", "--compress", "lzma", str(tmp_path / "f"), dst)
    assert run.returncode == 2 and b"invalid choice: 'lzma'" in run.stderr
    assert not os.path.exists(dst) and not os.path.exists(dst + ".gz")


# ------------------------------------------------------------------ 7. bytes of one object

MIB = 1 << 20
# S3's smallest part; one part at a time, so the parts complete one by one
MULTIPART = {"multipart_threshold": 5 * MIB, "multipart_chunksize": 5 * MIB,
             "multipart_concurrency": 1}


@pytest.fixture
def slow_moto(moto_server):
    """Store options for moto behind benchmarks/delayproxy.c (40 ms each way, at most
    1 MiB held at once): a multipart upload of a few parts lasts about a second, long
    enough to be watched part by part."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    "benchmarks"))
    import delayproxy
    target = moto_server.endpoint.split("://", 1)[1]
    with delayproxy.DelayProxy(target, delay_ms=40) as px:
        yield moto_server.store_options(endpoint_url=f"http://127.0.0.1:{px.port}", **MULTIPART)


def _watch_one_upload(store, data) -> list[int]:
    """store.put('big', data) on a thread; store.upload_bytes_held read meanwhile, every
    millisecond or so: the values read."""
    import threading
    import time
    seen, failed = [], []

    def upload():
        try:
            store.put("big", data)
        except Exception as e:  # noqa: BLE001 - reported below
            failed.append(e)

    assert store.upload_bytes_held == 0
    t = threading.Thread(target=upload)
    t.start()
    while t.is_alive():
        seen.append(store.upload_bytes_held)
        time.sleep(0.001)
    t.join()
    assert not failed, failed
    # the upload's bytes leave the count when it completes
    assert store.upload_bytes_held == 0
    assert store["big"] == data
    # it only grows while the upload runs (then drops to 0 when it completes)
    while seen and seen[-1] == 0:
        seen.pop()
    assert seen == sorted(seen), seen
    return sorted(set(seen) - {0})


def test_upload_bytes_held_counts_the_parts_of_an_s3_upload(moto_server, slow_moto):
    from cloudfiles_store import CloudFilesStore
    data = os.urandom(28 * MIB)  # parts of 5, 5, 5, 5, 5 and 3 MiB
    with CloudFilesStore(moto_server.url(uuid.uuid4().hex), **slow_moto) as s:
        held = _watch_one_upload(s, data)
    # whole parts, as they were stored, several of them seen on the way
    assert set(held) <= {n * 5 * MIB for n in range(1, 6)} | {len(data)}, held
    assert len(held) >= 3, held


def test_upload_bytes_held_counts_the_chunks_of_a_gcs_resumable_upload(gcs_server):
    from conftest import GCS_BUCKET

    from cloudfiles_store import CloudFilesStore
    quantum = 256 * 1024  # GCS's chunk unit
    data = os.urandom(64 * quantum)
    with CloudFilesStore(f"gs://{GCS_BUCKET}/{uuid.uuid4().hex}", endpoint_url=gcs_server.url,
                         resumable_threshold=quantum, resumable_chunksize=quantum) as s:
        held = _watch_one_upload(s, data)
    # what the session held after each chunk
    assert all(n % quantum == 0 and 0 < n <= len(data) for n in held), held
    assert len(held) >= 3, held


def test_progress_bar_moves_by_parts_during_one_large_upload(moto_server, slow_moto, tmp_path):
    big = tmp_path / "big.bin"
    data = os.urandom(28 * MIB)
    big.write_bytes(data)
    url = moto_server.url(uuid.uuid4().hex)
    dst_opts = [a for k, v in slow_moto.items() for a in ("--dst-opt", f"{k}={v}")]
    status, text = _on_a_terminal("cp", str(big), url + "/big.bin", *dst_opts)
    assert status == 0, text
    percents = [int(p) for p in re.findall(r"copied:\s+(\d+)%", text)]
    # before: 0% until the object completed, then 100%; now the parts move it
    assert any(0 < p < 100 for p in percents), text
    assert percents == sorted(percents) and percents[-1] == 100, text
    bar = [line for line in text.replace("\r", "\n").splitlines() if "copied:" in line]
    assert "100%" in bar[-1] and "1/1 objects" in bar[-1], text
    from cloudfiles_store import CloudFilesStore
    with CloudFilesStore(url, **moto_server.store_options()) as s:
        assert s["big.bin"] == data


# ------------------------------------------------------------------ 8. profiles

def _config(path, text, mode=0o600):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    return path


def _moto_profile(srv, name="moto", **extra):
    opts = {**srv.store_options(), **extra}
    lines = [f"[profile.{name}]"] + [f"{k} = {json.dumps(v)}" for k, v in opts.items()]
    return "\n".join(lines) + "\n"


def test_profile_for_one_side_of_a_copy(moto_server, tmp_path, monkeypatch):
    conf = _config(tmp_path / "conf.toml", _moto_profile(moto_server)
                   + '[profile.other]\nconcurrency = 4\n')
    monkeypatch.setenv("CLOUDFILES_STORE_CONFIG", str(conf))
    url = moto_server.url(uuid.uuid4().hex)
    (tmp_path / "f").write_bytes(b"via a profile")
    # the destination's endpoint and keys come from the profile; the local side has none
    ok("cp", str(tmp_path / "f"), url + "/f", "--dst-profile", "moto")
    assert ok("cat", url + "/f", "--profile", "moto").stdout == b"via a profile"
    # --profile names both sides: the file side leaves out what it does not take
    ok("--profile", "moto", "cp", str(tmp_path / "f"), url + "/g")
    ok("cp", url + "/g", str(tmp_path / "back"), "--src-profile", "moto", "--profile", "other")
    assert (tmp_path / "back").read_bytes() == b"via a profile"
    # $XDG_CONFIG_HOME/cloudfiles-store/config.toml when $CLOUDFILES_STORE_CONFIG is unset
    monkeypatch.delenv("CLOUDFILES_STORE_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    _config(tmp_path / "xdg" / "cloudfiles-store" / "config.toml", _moto_profile(moto_server, "x"))
    assert ok("cat", url + "/g", "--profile", "x").stdout == b"via a profile"


def test_profile_precedence(moto_server, tmp_path, monkeypatch):
    # a profile whose endpoint refuses connections: the command line's -o wins over it
    dead = socket_port_nobody_listens_on()
    conf = _config(tmp_path / "conf.toml",
                   _moto_profile(moto_server, endpoint_url=f"http://127.0.0.1:{dead}", retries=1)
                   + _moto_profile(moto_server, "gz", compress="gzip"))
    monkeypatch.setenv("CLOUDFILES_STORE_CONFIG", str(conf))
    url = moto_server.url(uuid.uuid4().hex)
    ok("put", url, "k", "--profile", "moto", "-o", f"endpoint_url={moto_server.endpoint}",
       input=COMPRESSIBLE)
    ok("put", url, "k2", "--dst-profile", "moto", "--dst-opt",
       f"endpoint_url={moto_server.endpoint}", input=b"x")
    err = one_line_error(cli("cat", url + "/k", "--profile", "moto"))
    assert url + "/k" in err or "127.0.0.1" in err
    assert moto_server.secret_access_key not in err
    # --src-profile overrides --profile on its side
    ok("cp", url + "/k", str(tmp_path / "k"), "--profile", "moto", "--src-profile", "gz")
    # a profile's compress is the default encoding of what a copy writes; --compress wins
    ok("cp", str(tmp_path / "k"), url + "/gz", "--dst-profile", "gz")
    assert _stored(moto_server, url, "gz")[0] == "gzip"
    ok("cp", str(tmp_path / "k"), url + "/plain", "--dst-profile", "gz", "--compress", "none")
    assert _stored(moto_server, url, "plain") == (None, COMPRESSIBLE)


def socket_port_nobody_listens_on() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_profile_errors_are_one_line_and_keep_secrets(moto_server, tmp_path, monkeypatch):
    secret = "s3cr3t-never-printed"
    conf = tmp_path / "conf.toml"
    monkeypatch.setenv("CLOUDFILES_STORE_CONFIG", str(conf))
    url = moto_server.url(uuid.uuid4().hex)
    err = one_line_error(cli("ls", url, "--profile", "p"), status=2)
    assert str(conf) in err and "no such config file" in err
    _config(conf, f'[profile.p]\nsecret_access_key = "{secret}"\nendpoint_url = oops\n')
    err = one_line_error(cli("ls", url, "--profile", "p"), status=2)
    assert "not valid TOML" in err and "line 3" in err and secret not in err
    _config(conf, f'[profile.p]\naccess_key_id = "a"\nsecret_access_key = "{secret}"\n'
            'endpiont_url = "x"\n[profile.q]\naccess_key_id = "a"\n')
    err = one_line_error(cli("ls", url, "--profile", "nope"), status=2)
    assert "no profile 'nope'" in err and "profiles there: p, q" in err
    err = one_line_error(cli("ls", url, "--profile", "p"), status=2)
    assert "profile 'p'" in err and "unknown option endpiont_url" in err and secret not in err
    # a store's other option errors name the profile too (exit 1, as for -o)
    err = one_line_error(cli("ls", url, "--profile", "q"))
    assert "go together" in err and "profile 'q'" in err
    _config(conf, f'[profile.p]\nsecret_access_key = ["{secret}"]\n')
    err = one_line_error(cli("ls", url, "--profile", "p"), status=2)
    assert "secret_access_key" in err and "not a list" in err and secret not in err
    _config(conf, "[profile.p]\nconcurrency = 2\n", mode=0o000)
    if os.geteuid() != 0:  # root reads it anyway
        err = one_line_error(cli("ls", url, "--profile", "p"), status=2)
        assert "cannot read" in err


def test_a_config_others_can_read_holding_secrets_is_warned_of(moto_server, tmp_path, monkeypatch):
    conf = _config(tmp_path / "conf.toml", _moto_profile(moto_server), mode=0o644)
    monkeypatch.setenv("CLOUDFILES_STORE_CONFIG", str(conf))
    url = moto_server.url(uuid.uuid4().hex)
    run = ok("put", url, "k", "--profile", "moto", "-q", input=b"x")
    err = run.stderr.decode()
    assert err.count("\n") == 1 and "warning" in err and "chmod 600" in err
    assert "secret_access_key" in err and moto_server.secret_access_key not in err
    os.chmod(conf, 0o600)
    assert ok("put", url, "k", "--profile", "moto", "-q", input=b"x").stderr == b""
    # no secrets in it: no warning
    _config(conf, "[profile.c]\nconcurrency = 3\n", mode=0o644)
    assert ok("ls", str(tmp_path), "--profile", "c").stderr == b""


def test_cp_between_endpoints_keeps_attributes(moto_server, gcs_server):
    """`cp -r` from S3 to GCS (streamed): the objects keep their content type, cache
    control, disposition and metadata, read with a HEAD each."""
    import urllib.parse
    import urllib.request

    from cloudfiles_store import CloudFilesStore
    from conftest import GCS_BUCKET
    unique = uuid.uuid4().hex
    src = CloudFilesStore(moto_server.url(unique), **moto_server.store_options())
    attrs = dict(content_type="text/csv; charset=utf-8", cache_control="public, max-age=60",
                 content_disposition='attachment; filename="t.csv"', metadata={"owner": "alice"})
    src.put("t/a.csv", b"a,b\n", **attrs)
    src.put("t/b.bin", b"\0" * 10, content_type="application/x-other", metadata={"n": "2"})
    src_opts = [a for k, v in moto_server.store_options().items() for a in ("--src-opt", f"{k}={v}")]
    ok("cp", "-r", "-q", f"{moto_server.url(unique)}/t/", f"gs://{GCS_BUCKET}/{unique}/",
       *src_opts, "--dst-opt", f"endpoint_url={gcs_server.url}")

    def gcs_object(key):
        name = urllib.parse.quote(f"{unique}/{key}", safe="")
        with urllib.request.urlopen(f"{gcs_server.url}/storage/v1/b/{GCS_BUCKET}/o/{name}",
                                    timeout=10) as r:
            return json.load(r)

    a = gcs_object("a.csv")
    assert a["contentType"] == attrs["content_type"]
    assert a.get("cacheControl") == attrs["cache_control"]
    assert a.get("contentDisposition") == attrs["content_disposition"]
    assert a["metadata"] == {"owner": "alice"}
    b = gcs_object("b.bin")
    assert b["contentType"] == "application/x-other" and b["metadata"] == {"n": "2"}
