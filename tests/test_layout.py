"""The tree keeps its promise about backends: a new storage protocol is its own folder
under csrc/backends/ plus one registration line in csrc/backends/registry.c. Nothing in
the engine, the CPython layer or the Python package keeps a list of backends: a backend
declares its secret options, capabilities and the response headers it reads through
cfs_backend_ops (csrc/core/backend.h).

The test writes a small backend (echo://, a local one), registers it with one line, builds
the extension in a copy of the tree and uses it from Python: reads, writes, its secret
option masked in repr, its capabilities, zarr 3 on top."""
import filecmp
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parent.parent

ECHO_BACKEND = r'''
/* echo://: a toy local backend for tests/test_layout.py. A GET returns the key itself as
 * the object's bytes; a PUT of the key's own bytes succeeds, any other value is refused. */
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"

extern const cfs_backend_ops cfs_echo_backend;

typedef struct echo_backend {
    cfs_backend base;
    char *secret;
} echo_backend;

static cfs_backend *echo_open(const char *url, cfs_options *opts, char *err, size_t errlen)
{
    (void)url;
    (void)err;
    (void)errlen;
    echo_backend *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->base.ops = &cfs_echo_backend;
    const char *secret = cfs_options_take(opts, "echo_secret");
    if (secret && !(e->secret = strdup(secret))) {
        free(e);
        return NULL;
    }
    return &e->base;
}

static void echo_close(cfs_backend *b)
{
    echo_backend *e = (echo_backend *)b;
    free(e->secret);
    free(e);
}

static void echo_execute(cfs_backend *b, cfs_op *op)
{
    (void)b;
    size_t n = strlen(op->key);
    if (cfs_op_set_where(op, "echo://") < 0) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return;
    }
    switch (op->kind) {
    case CFS_OP_GET:
        if (cfs_buf_append(&op->data, op->key, n) < 0)
            cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        op->size = (int64_t)n;
        break;
    case CFS_OP_HEAD:
        op->size = (int64_t)n;
        break;
    case CFS_OP_PUT:
        if (op->body_len != n || memcmp(op->body, op->key, n) != 0)
            cfs_op_fail(op, CFS_EINVALID, "echo:// holds each key's own name only");
        break;
    default:
        break;
    }
}

static const char *echo_url(cfs_backend *b)
{
    (void)b;
    return "echo://";
}

static const char *const echo_schemes[] = {"echo", NULL};
static const char *const echo_secret_options[] = {"echo_secret", NULL};

const cfs_backend_ops cfs_echo_backend = {
    .name = "echo",
    .schemes = echo_schemes,
    .capabilities = CFS_CAP_ATOMIC_IF_ABSENT,
    .secret_options = echo_secret_options,
    .open = echo_open,
    .close = echo_close,
    .execute = echo_execute,
    .url = echo_url,
};
'''

USE_IT = textwrap.dedent('''
    import asyncio
    from cloudfiles_store import CloudFilesStore, ZarrStore
    from zarr.core.buffer import default_buffer_prototype

    s = CloudFilesStore("echo://", echo_secret="hush-42")
    assert s["a/b"] == b"a/b", s["a/b"]
    s["x/y"] = b"x/y"
    assert s.getitems(["k1", "k2"]) == {"k1": b"k1", "k2": b"k2"}
    assert "hush-42" not in repr(s), repr(s)
    assert s.capabilities == frozenset({"atomic_if_absent"}), s.capabilities

    async def zarr3():
        z = ZarrStore("echo://")
        buf = await z.get("c/0", default_buffer_prototype())
        return buf.to_bytes()
    assert asyncio.run(zarr3()) == b"c/0"
    print("echo ok")
''')


def _copy_tree(dst):
    for name in ("csrc", "cloudfiles_store"):
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dst / name)


def _changed_files(a, b):
    """Files of tree b that are new or differ from tree a, relative paths."""
    out = []
    for dirpath, _, files in os.walk(b):
        for f in files:
            rel = os.path.relpath(os.path.join(dirpath, f), b)
            old = os.path.join(a, rel)
            if not os.path.exists(old) or not filecmp.cmp(old, os.path.join(b, rel), shallow=False):
                out.append(rel)
    return sorted(out)


def test_new_backend_is_a_folder_and_one_registration_line(tmp_path):
    tree = tmp_path / "tree"
    _copy_tree(tree)
    (tree / "csrc/backends/echo").mkdir()
    (tree / "csrc/backends/echo/driver.c").write_text(ECHO_BACKEND)
    registry = tree / "csrc/backends/registry.c"
    lines = registry.read_text().splitlines(keepends=True)
    end = next(i for i, line in enumerate(lines) if "a new backend: one X(name) line" in line)
    lines.insert(end, "    X(echo)             \\\n")
    registry.write_text("".join(lines))

    changed = _changed_files(ROOT, tree)
    assert changed == ["csrc/backends/echo/driver.c", "csrc/backends/registry.c"], changed
    before = (ROOT / "csrc/backends/registry.c").read_text().splitlines()
    after = registry.read_text().splitlines()
    assert [line for line in after if line not in before] == ["    X(echo)             \\"]
    assert len(after) == len(before) + 1

    env = dict(os.environ, CFS_EXTRA_CFLAGS="-O0 -Werror")
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace", "-j", "2"],
                           cwd=tree, env=env, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-5000:]
    run = subprocess.run([sys.executable, "-c", USE_IT], cwd=tree, capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, PYTHONPATH=str(tree)))
    assert run.returncode == 0 and "echo ok" in run.stdout, run.stdout + run.stderr
