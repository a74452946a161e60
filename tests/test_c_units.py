"""Compile and run the pure C unit tests in tests/c/.

Every tests/c/**/test_*.c is picked up (the folders mirror csrc/). Its header comment names what it links:

    // sources: csrc/backends/s3/sigv4.c csrc/core/buf.c   (paths relative to the repository root)
    // pkg: libcrypto libcjson               (pkg-config names; optional)
    // args: tests/data/aws-sigv4           (command-line arguments; optional)

Each test is built twice, warnings as errors: once plainly, once with AddressSanitizer and
UndefinedBehaviorSanitizer (leak checking on). It runs from the repository root; a non-zero
exit or any sanitizer report fails the test.
"""
import subprocess

import pytest

import cbuild

C_TESTS = sorted(cbuild.C_DIR.rglob("test_*.c"))
C_TEST_IDS = [str(p.relative_to(cbuild.C_DIR).with_suffix("")) for p in C_TESTS]


@pytest.mark.parametrize("variant", sorted(cbuild.VARIANTS))
@pytest.mark.parametrize("source", C_TESTS, ids=C_TEST_IDS)
def test_c_unit(source, variant, tmp_path):
    try:
        exe = cbuild.build(source, tmp_path, variant)
    except cbuild.BuildError as e:
        pytest.fail(str(e))
    args = cbuild.directives(source)["args"]
    run = subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cbuild.ROOT,
                         env=cbuild.sanitizer_env(), timeout=600)
    report = run.stdout + run.stderr
    print(report)
    assert run.returncode == 0, f"{source.name} [{variant}] exited {run.returncode}:\n{report[-20000:]}"
    marker = cbuild.sanitizer_report(report)
    assert marker is None, f"{source.name} [{variant}]: sanitizer report ({marker}):\n{report[-20000:]}"


def test_c_units_found():
    assert C_TESTS, "no tests/c/**/test_*.c found"
