"""Compile and run the pure C unit tests in tests/c/.

Every tests/c/test_*.c is picked up. Its header comment names what it links:

    // sources: csrc/sigv4.c csrc/buf.c      (paths relative to the repository root)
    // pkg: libcrypto libcjson               (pkg-config names; optional)
    // args: ../shared/testdata/aws-sigv4    (command-line arguments; optional)

Each test is built twice, warnings as errors: once plainly, once with AddressSanitizer and
UndefinedBehaviorSanitizer (leak checking on). It runs from the repository root; a non-zero
exit or any sanitizer report fails the test.
"""
import os
import pathlib
import re
import shlex
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
C_TESTS = sorted((ROOT / "tests" / "c").glob("test_*.c"))

WARNINGS = ["-Wall", "-Wextra", "-Wshadow", "-Wstrict-prototypes", "-Wno-missing-field-initializers",
            "-Werror"]
BASE = ["-std=c11", "-D_GNU_SOURCE", "-g", f"-I{ROOT / 'csrc'}"]
VARIANTS = {
    "plain": ["-O2"],
    "asan-ubsan": ["-O1", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                   "-fno-sanitize-recover=all"],
}
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: AddressSanitizer", "SUMMARY: UndefinedBehaviorSanitizer",
                     "WARNING: AddressSanitizer")


def directives(path):
    """The `// key: value` lines of a test's header comment."""
    found = {"sources": [], "pkg": [], "args": []}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*//\s*(sources|pkg|args):\s*(.*)$", line)
        if m:
            found[m.group(1)] += shlex.split(m.group(2))
    return found


def pkg_config(names):
    if not names:
        return []
    out = subprocess.run(["pkg-config", "--cflags", "--libs", *names], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.fail(f"pkg-config {' '.join(names)} failed: {out.stderr.strip()}")
    return shlex.split(out.stdout)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("source", C_TESTS, ids=[p.stem for p in C_TESTS])
def test_c_unit(source, variant, tmp_path):
    cc = os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        pytest.fail(f"C compiler {cc!r} not found")
    d = directives(source)
    if not d["sources"]:
        pytest.fail(f"{source.name}: no '// sources:' line")
    sources = [str(ROOT / s) for s in d["sources"]]
    exe = tmp_path / f"{source.stem}-{variant}"
    cmd = [cc, *BASE, *WARNINGS, *VARIANTS[variant], str(source), *sources, *pkg_config(d["pkg"]),
           "-lpthread", "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert build.returncode == 0 and not build.stderr.strip(), (
        f"compile failed or warned:\n{' '.join(cmd)}\n{build.stderr}")

    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    run = subprocess.run([str(exe), *d["args"]], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=600)
    report = run.stdout + run.stderr
    print(report)
    assert run.returncode == 0, f"{source.name} [{variant}] exited {run.returncode}:\n{report[-20000:]}"
    for marker in SANITIZER_MARKERS:
        assert marker not in report, f"{source.name} [{variant}]: sanitizer report:\n{report[-20000:]}"


def test_c_units_found():
    assert C_TESTS, "no tests/c/test_*.c found"
