"""A short run of every libFuzzer target (tests/fuzz/) through .ci/fuzz, as CI does it:
FUZZ_SECONDS=3 each from the seed corpus. clang and libFuzzer are required (.ci/install
installs them): their absence fails here, it is not skipped."""
import os
import shutil
import subprocess

import pytest

import cbuild

FUZZ_DIR = cbuild.ROOT / "tests" / "fuzz"
TARGETS = sorted(p.stem for p in FUZZ_DIR.glob("*.c"))
SECONDS = 3


def test_clang_and_libfuzzer_present(tmp_path):
    cc = shutil.which(cbuild.FUZZ_CC)
    assert cc, f"{cbuild.FUZZ_CC} not found: apt-get install clang libclang-rt-14-dev (.ci/install)"
    probe = tmp_path / "probe.c"
    probe.write_text("int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)"
                     " { (void)d; (void)n; return 0; }\n")
    res = subprocess.run([cc, "-fsanitize=fuzzer,address,undefined", str(probe), "-o", str(tmp_path / "probe")],
                         capture_output=True, text=True)
    assert res.returncode == 0, f"libFuzzer missing: apt-get install libclang-rt-14-dev\n{res.stderr}"


def test_every_target_has_seeds():
    assert len(TARGETS) >= 18, TARGETS
    for name in TARGETS:
        seeds = list((FUZZ_DIR / "corpus" / name).glob("*"))
        assert seeds, f"tests/fuzz/corpus/{name}/ has no seed inputs"
        assert all(p.stat().st_size <= 64 * 1024 for p in seeds), f"{name}: keep seeds small"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", TARGETS)
def test_fuzz_target(name, tmp_path):
    env = dict(os.environ, FUZZ_SECONDS=str(SECONDS), FUZZ_WORK=str(tmp_path))
    res = subprocess.run(["bash", str(cbuild.ROOT / ".ci" / "fuzz"), name], capture_output=True, text=True,
                         env=env, timeout=110)
    out = res.stdout + res.stderr
    print(out)
    assert res.returncode == 0, f".ci/fuzz {name} failed (exit {res.returncode}):\n{out[-20000:]}"
    rows = [line.split() for line in res.stdout.splitlines() if line.startswith(name + " ")]
    assert rows and rows[-1][1] == "ok" and int(rows[-1][2]) > 0, f"no executions reported:\n{out}"
