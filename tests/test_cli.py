"""The command-line tool, run as a separate process against real stores."""

import subprocess
import sys

import pytest


def cli(*args, input=None):
    return subprocess.run([sys.executable, "-m", "cloudfiles_store", *args], input=input,
                          capture_output=True, timeout=120)


@pytest.fixture(params=["file", "http"])
def url(request, tmp_path, nginx_url):
    return f"file://{tmp_path}/tree" if request.param == "file" else nginx_url


def test_put_cat_ls_du_rm(url):
    assert cli("put", url, "d/a b", input=b"first").returncode == 0
    assert cli("put", url, "d/sub/c", input=b"second!").returncode == 0
    assert cli("cat", url, "d/a b").stdout == b"first"
    assert cli("ls", url, "d").stdout.decode().split("\n")[:-1] == ["a b", "sub"]
    assert cli("ls", "-r", url).stdout.decode().split("\n")[:-1] == ["d/a b", "d/sub/c"]
    assert cli("du", url, "d").stdout.decode().strip() == "12 bytes in 2 objects"
    assert cli("rm", url, "d/sub").returncode == 0
    assert cli("ls", "-r", url).stdout.decode().split("\n")[:-1] == ["d/a b"]


def test_cp_copies_a_tree_between_backends(url, tmp_path):
    for i in range(50):
        assert cli("put", url, f"t/{i}", input=bytes([i]) * (i + 1)).returncode == 0
    dst = f"file://{tmp_path}/copy"
    run = cli("--concurrency", "8", "cp", url, dst)
    assert run.returncode == 0, run.stderr
    for i in (0, 17, 49):
        assert cli("cat", dst, f"t/{i}").stdout == bytes([i]) * (i + 1)
    assert cli("du", dst).stdout.decode().strip() == f"{sum(range(1, 51))} bytes in 50 objects"


def test_errors_are_one_line_and_exit_1(url):
    run = cli("cat", url, "missing")
    assert run.returncode == 1 and b"no such key" in run.stderr
    run = cli("cat", "nosuch://x", "k")
    assert run.returncode == 1 and b"unsupported URL" in run.stderr
    run = cli("-o", "bogus=1", "ls", url)
    assert run.returncode == 1 and b"unknown option bogus" in run.stderr


def test_ctrl_c_exits_130_with_one_line(fault_server):
    """SIGINT while a read stalls: the tool gives the read up and exits at once with 130."""
    import signal
    import time

    fault_server.put("/cli-int/k", b"x" * 100_000)
    fault_server.add_faults("/cli-int/k", ["stall:30"])
    proc = subprocess.Popen([sys.executable, "-m", "cloudfiles_store", "cat",
                             fault_server.url + "/cli-int", "k"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not fault_server.requests("/cli-int/k") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fault_server.requests("/cli-int/k"), "the tool never sent its request"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert time.monotonic() - t0 < 5
    assert proc.returncode == 130 and err == b"cloudfiles-store: interrupted\n" and out == b""
