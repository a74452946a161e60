"""Store URLs as users type them (csrc/core/url.c): schemes are case-insensitive, file:/path
is a file URL, ~ expands as os.path.expanduser does, and a mistyped URL is an error naming
it (with its password masked), never a directory under the working directory."""
import os
import uuid

import pytest

from cloudfiles_store import CloudFilesStore, ZarrStore, errors


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working directory to check that nothing lands in it."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


@pytest.mark.parametrize("url", ["s3:/bucket/x", "gs:/b", "http:/h", "https:h", "mem:name", "s3:bucket",
                                 "file:relative/x", "file://otherhost/x", "htp://alice:hunter2@host/",
                                 "ftp://host/x", "odd:name"])
@pytest.mark.parametrize("cls", [CloudFilesStore, ZarrStore])
def test_mistyped_urls_are_errors(url, cls, elsewhere):
    with pytest.raises(errors.UnsupportedSchemeError) as ei:
        cls(url)
    msg = str(ei.value)
    assert "hunter2" not in msg and "hunter2" not in repr(ei.value)
    assert url.replace("hunter2", "***") in msg
    assert os.listdir(elsewhere) == []


def test_schemes_are_case_insensitive(moto_server, elsewhere):
    name = f"m{uuid.uuid4().hex}"
    with CloudFilesStore(f"mem://{name}") as lower, CloudFilesStore(f"MEM://{name}") as upper:
        lower["k"] = b"v"
        assert upper["k"] == b"v"
    url = moto_server.url(f"u{uuid.uuid4().hex[:8]}")
    assert url.startswith("s3://")
    with CloudFilesStore(url, **moto_server.store_options()) as lower, \
            CloudFilesStore("S3" + url[2:], **moto_server.store_options()) as upper:
        upper["a/b"] = b"through S3://"
        assert lower["a/b"] == b"through S3://"
        assert upper.url == lower.url
    assert os.listdir(elsewhere) == []


@pytest.mark.parametrize("form", ["file:{p}", "file://{p}", "file://localhost{p}", "FILE://{p}", "{p}"])
def test_file_url_forms(form, tmp_path, elsewhere):
    root = tmp_path / "root"
    with CloudFilesStore(form.format(p=root)) as store:
        store["a/k"] = b"v"
        assert store.url == f"file://{root}"
    assert (root / "a" / "k").read_bytes() == b"v"
    assert os.listdir(elsewhere) == []


def test_home_is_expanded(tmp_path, monkeypatch, elsewhere):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    with CloudFilesStore("~/data") as store:
        store["k"] = b"v"
        assert store.url == f"file://{home}/data"
    assert (home / "data" / "k").read_bytes() == b"v"
    assert os.listdir(elsewhere) == []


def test_relative_paths_stay_file_stores(elsewhere):
    with CloudFilesStore("rel/dir") as store:
        store["k"] = b"v"
    with CloudFilesStore("./with:colon") as store:
        store["k"] = b"w"
    assert (elsewhere / "rel" / "dir" / "k").read_bytes() == b"v"
    assert (elsewhere / "with:colon" / "k").read_bytes() == b"w"
