"""The package's types as a user's type checker sees them: cloudfiles_store/_core.pyi (the
C types) passes mypy --strict, and so does a small program using the API, while the same
program with a wrong argument type fails (so the stub is what mypy read).

Errors inside the package's own Python modules are not reported here (follow_imports =
silent), as mypy does for any installed package; the stub itself is checked strictly."""
import os
import pathlib
import subprocess
import sys
import textwrap


import cloudfiles_store

PKG_PARENT = pathlib.Path(cloudfiles_store.__file__).resolve().parent.parent

SAMPLE = """\
    import asyncio
    from cloudfiles_store import CloudFilesStore, BatchError, CloudFilesError, engine_stats
    from cloudfiles_store import _core

    def use(url: str) -> int:
        with CloudFilesStore(url, concurrency=8, retries=2) as store:
            store["a/b"] = b"bytes"
            store["a/c"] = memoryview(b"view")
            data: bytes = store["a/b"]
            found: dict[str, bytes] = store.getitems(["a/b", "a/c"])
            store.setitems({"x/0": b"0", "x/1": b"1"})
            store.setitems([("x/2", bytearray(b"2"))])
            store.delitems(k for k in store if k.startswith("x/"))
            names: list[str] = store.listdir("a")
            total: int = store.getsize("a")
            part: bytes = store.get_range("a/b", 0, 2)
            parts: list[bytes | None] = store.get_ranges([("a/b", -2, None)])
            listing: list[tuple[str, int]] = store.entries(prefix="a/")
            for key, value in store.iter_get(["a/b"]):
                if value is not None:
                    total += len(value) + len(key)
            store.copy("a/b", "a/d")
            caps: frozenset[str] = store.capabilities
            try:
                store.rmdir("a")
            except BatchError as e:
                errors: list[CloudFilesError] = list(e.errors)
            stats: dict[str, int] = engine_stats()
            where: str | None = store.url
        return len(data) + len(found) + len(names) + total + len(part) + len(parts) + \\
            len(listing) + len(caps) + stats["requests"] + len(where or "")

    async def queue(store: _core.Store) -> int | None:
        q = _core.Completions()
        fut: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        q.head(store, "a/b", fut)
        q.drain()
        return await fut
"""

BAD = SAMPLE + """
    def wrong(store: CloudFilesStore) -> str:
        return store.get_range("k", "0")
"""

CONFIG = """\
[mypy]
strict = True
warn_unused_configs = True

[mypy-cloudfiles_store.*]
follow_imports = silent
"""


def _mypy(tmp_path, *args, source=None):
    if source is not None:
        sample = tmp_path / "sample.py"
        sample.write_text(textwrap.dedent(source))
        args = (str(sample), *args)
    cfg = tmp_path / "mypy.ini"
    cfg.write_text(CONFIG)
    env = dict(os.environ)
    # mypy finds an installed package (a wheel in a venv) in its interpreter's
    # site-packages; a checkout's package through MYPYPATH
    if "site-packages" not in PKG_PARENT.parts:
        env["MYPYPATH"] = str(PKG_PARENT)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(cfg), "--no-incremental",
         "--cache-dir", str(tmp_path / "cache"), *args],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=240)


def test_the_stub_and_a_program_using_the_api_pass_mypy_strict(tmp_path):
    for args in (("-m", "cloudfiles_store._core"), ()):
        res = _mypy(tmp_path, *args, source=None if args else SAMPLE)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "Success" in res.stdout


def test_a_wrong_call_fails_mypy(tmp_path):
    res = _mypy(tmp_path, source=BAD)
    assert res.returncode == 1, res.stdout + res.stderr
    out = res.stdout
    assert 'Argument 2 to "get_range" of "Store" has incompatible type "str"; expected "int"' in out
    assert 'Incompatible return value type (got "bytes", expected "str")' in out
    assert out.count("error:") == 2, out


def test_the_package_ships_its_types():
    pkg = PKG_PARENT / "cloudfiles_store"
    assert (pkg / "py.typed").is_file()
    assert (pkg / "_core.pyi").is_file()


def test_every_public_name_of_the_c_module_is_in_the_stub():
    """A method or type added in csrc/python/ without its stub entry fails here."""
    import ast

    from cloudfiles_store import _core
    tree = ast.parse((PKG_PARENT / "cloudfiles_store" / "_core.pyi").read_text())
    stub = {n.name: n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    missing = []
    for name, obj in vars(_core).items():
        if name.startswith("_"):
            continue
        if name not in stub:
            missing.append(name)
        elif isinstance(obj, type):
            members = {m.name for m in stub[name].body if isinstance(m, ast.FunctionDef)}
            missing += [f"{name}.{m}" for m in vars(obj) if not m.startswith("_") and m not in members]
    assert not missing, f"not in cloudfiles_store/_core.pyi: {missing}"
