"""Build test-only C programs from tests/c/ (shared by test_c_units.py and tests that drive
a C program over stdin/stdout) and the libFuzzer targets of tests/fuzz/ (variant "fuzz",
with clang; .ci/fuzz calls this file as a script). A source names what it links in its
header comment: `// sources: csrc/a.c ...`, `// pkg: libcrypto ...`, `// args: ...` (for a
fuzz target, its libFuzzer flags)."""
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
C_DIR = ROOT / "tests" / "c"

WARNINGS = ["-Wall", "-Wextra", "-Wshadow", "-Wstrict-prototypes", "-Wno-missing-field-initializers",
            "-Werror"]
BASE = ["-std=c11", "-D_GNU_SOURCE", "-g", f"-I{ROOT / 'csrc'}", f"-I{C_DIR}"]
VARIANTS = {
    "plain": ["-O2"],
    "asan-ubsan": ["-O1", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                   "-fno-sanitize-recover=all"],
}
# libFuzzer targets: no main() of their own, so not a variant of the unit tests.
FUZZ_CC = "clang"
FUZZ_FLAGS = ["-O1", "-fno-omit-frame-pointer", "-fsanitize=fuzzer,address,undefined",
              "-fno-sanitize-recover=all"]
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: AddressSanitizer", "SUMMARY: UndefinedBehaviorSanitizer",
                     "WARNING: AddressSanitizer")


class BuildError(Exception):
    pass


def directives(path):
    """The `// key: value` lines of a C source's header comment."""
    found = {"sources": [], "pkg": [], "args": []}
    for line in pathlib.Path(path).read_text().splitlines():
        m = re.match(r"\s*//\s*(sources|pkg|args):\s*(.*)$", line)
        if m:
            found[m.group(1)] += shlex.split(m.group(2))
    return found


def pkg_config(names):
    if not names:
        return []
    out = subprocess.run(["pkg-config", "--cflags", "--libs", *names], capture_output=True, text=True)
    if out.returncode != 0:
        raise BuildError(f"pkg-config {' '.join(names)} failed: {out.stderr.strip()}")
    return shlex.split(out.stdout)


def build(source, out_dir, variant="plain"):
    """Compile tests/c/<source> with its declared sources and packages; return the binary.
    Raises BuildError on any error or warning."""
    source = pathlib.Path(source)
    if not source.is_absolute():
        source = C_DIR / source
    fuzz = variant == "fuzz"
    cc = os.environ.get("FUZZ_CC", FUZZ_CC) if fuzz else os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        raise BuildError(f"C compiler {cc!r} not found")
    d = directives(source)
    if not d["sources"]:
        raise BuildError(f"{source.name}: no '// sources:' line")
    exe = pathlib.Path(out_dir) / f"{source.stem}-{variant}"
    flags = FUZZ_FLAGS if fuzz else VARIANTS[variant]
    cmd = [cc, *BASE, *WARNINGS, *flags, str(source), *(str(ROOT / s) for s in d["sources"]),
           *pkg_config(d["pkg"]), "-lpthread", "-o", str(exe)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0 or res.stderr.strip():
        raise BuildError(f"compile failed or warned:\n{' '.join(cmd)}\n{res.stderr}")
    return exe


def sanitizer_env():
    env = dict(os.environ)
    env.update(SANITIZER_ENV)
    return env


def sanitizer_report(text):
    """The first sanitizer marker found in a program's output, or None."""
    for marker in SANITIZER_MARKERS:
        if marker in text:
            return marker
    return None


def main(argv):
    """cbuild.py [--variant V] SOURCE OUT_DIR: build, then print the binary's path and its
    `// args:`, one per line."""
    variant = "plain"
    if argv[:1] == ["--variant"]:
        variant, argv = argv[1], argv[2:]
    if len(argv) != 2:
        sys.exit(main.__doc__)
    try:
        exe = build(pathlib.Path(argv[0]).resolve(), argv[1], variant)
    except BuildError as e:
        sys.exit(str(e))
    print("\n".join([str(exe), *directives(argv[0])["args"]]))


if __name__ == "__main__":
    main(sys.argv[1:])
