"""A real nginx (Debian's nginx-light) on 127.0.0.1 for tests and benchmarks.

    srv = NginxServer(tls=True).start()
    srv.url          # http://127.0.0.1:PORT
    srv.tls_url      # https://127.0.0.1:PORT2 (certificate for 127.0.0.1 and localhost)
    srv.ca_file      # PEM of the CA that signed the server certificate
    srv.wrong_ca_file  # PEM of an unrelated CA (for "wrong CA is refused" tests)
    srv.root         # the data directory served at /
    srv.stop()

The data directory accepts PUT (creating parent directories) and DELETE, and answers a GET
on a directory URL ending in "/" with nginx's `autoindex_format json` listing. nginx's
autoindex hides names starting with ".".

nginx runs in the foreground (`daemon off`) with a master and `workers` worker processes,
its own prefix, configuration, pid, temp and log files in a private temporary directory.
When started as root the workers run as nobody:nogroup, so the data and temp directories
are made world-writable.

No pytest here: benchmarks import this module too.
"""
import atexit
import grp
import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time

NGINX_BIN = os.environ.get("CFS_NGINX", "/usr/sbin/nginx")
OPENSSL_BIN = os.environ.get("CFS_OPENSSL", "openssl")


class ServerStartError(RuntimeError):
    """A test server did not start; the message carries its log."""


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_open(host, port, timeout=0.2):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _run(args, cwd):
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ServerStartError(
            f"command failed ({proc.returncode}): {' '.join(args)}\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_test_pki(directory, hosts_ip=("127.0.0.1",), hosts_dns=("localhost",)):
    """Create with the openssl CLI: a CA, a server certificate signed by it for the given
    IPs and DNS names, and an unrelated "wrong" CA. Returns a dict of PEM file paths:
    ca_cert, ca_key, server_cert, server_key, wrong_ca_cert, wrong_ca_key."""
    os.makedirs(directory, exist_ok=True)
    d = directory
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    _run([OPENSSL_BIN, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem",
          "-days", "30", "-subj", "/CN=cloudfiles_store test CA", *ca_ext], d)
    _run([OPENSSL_BIN, "req", "-x509", *ec, "-keyout", "wrong-ca.key", "-out", "wrong-ca.pem",
          "-days", "30", "-subj", "/CN=cloudfiles_store wrong CA", *ca_ext], d)
    _run([OPENSSL_BIN, "req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr",
          "-subj", "/CN=localhost"], d)
    san = ",".join([f"IP:{ip}" for ip in hosts_ip] + [f"DNS:{h}" for h in hosts_dns])
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write(f"subjectAltName={san}\n"
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n")
    _run([OPENSSL_BIN, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
          "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "30",
          "-extfile", "server.ext", "-out", "server.pem"], d)
    j = lambda name: os.path.join(d, name)  # noqa: E731
    return {"ca_cert": j("ca.pem"), "ca_key": j("ca.key"),
            "server_cert": j("server.pem"), "server_key": j("server.key"),
            "wrong_ca_cert": j("wrong-ca.pem"), "wrong_ca_key": j("wrong-ca.key")}


class NginxServer:
    """nginx serving a writable data directory over http (and https when tls=True)."""

    def __init__(self, root=None, tls=True, workers=2, access_log=False, host="127.0.0.1",
                 start_timeout=10.0, extra_http_conf="", keepalive_requests=100000,
                 access_log_format=None):
        self.host = host
        self.tls = tls
        self.workers = workers
        self.access_log = access_log
        # nginx log_format string for the access log (e.g. "$ssl_session_reused $connection")
        self.access_log_format = access_log_format
        self.start_timeout = start_timeout
        self.extra_http_conf = extra_http_conf
        self.keepalive_requests = keepalive_requests
        self._given_root = root
        self.prefix = None
        self.root = None
        self.port = None
        self.tls_port = None
        self.ca_file = None
        self.wrong_ca_file = None
        self.proc = None
        self._atexit = None

    # -- public --------------------------------------------------------------------
    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    @property
    def tls_url(self):
        if not self.tls:
            raise RuntimeError("NginxServer was created with tls=False")
        return f"https://{self.host}:{self.tls_port}"

    @property
    def error_log(self):
        return os.path.join(self.prefix, "logs", "error.log")

    @property
    def access_log_path(self):
        return os.path.join(self.prefix, "logs", "access.log")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        if self.running():
            return self
        if not os.path.exists(NGINX_BIN):
            raise ServerStartError(
                f"{NGINX_BIN} not found: install Debian's nginx-light (apt-get install nginx-light)")
        self.prefix = tempfile.mkdtemp(prefix="cfs-nginx-")
        os.chmod(self.prefix, 0o755)
        for sub in ("logs", "conf", "tmp", "tmp/body", "tmp/proxy", "tmp/fastcgi",
                    "tmp/uwsgi", "tmp/scgi"):
            os.makedirs(os.path.join(self.prefix, sub), exist_ok=True)
        for sub in ("tmp", "tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
            os.chmod(os.path.join(self.prefix, sub), 0o777)
        if self._given_root is None:
            self.root = os.path.join(self.prefix, "data")
            os.makedirs(self.root, exist_ok=True)
        else:
            self.root = os.path.abspath(self._given_root)
            os.makedirs(self.root, exist_ok=True)
        os.chmod(self.root, 0o777)
        if self.tls:
            pki = make_test_pki(os.path.join(self.prefix, "pki"))
            self._pki = pki
            self.ca_file = pki["ca_cert"]
            self.wrong_ca_file = pki["wrong_ca_cert"]
            os.chmod(os.path.join(self.prefix, "pki"), 0o755)
        last_error = None
        for _attempt in range(3):  # a port taken between free_port() and bind(): retry
            self.port = free_port(self.host)
            self.tls_port = free_port(self.host) if self.tls else None
            while self.tls and self.tls_port == self.port:
                self.tls_port = free_port(self.host)
            try:
                self._launch()
                break
            except ServerStartError as e:
                last_error = e
                if "Address already in use" not in str(e):
                    self._cleanup_files()
                    raise
        else:
            self._cleanup_files()
            raise last_error
        self._atexit = self.stop
        atexit.register(self._atexit)
        return self

    def stop(self):
        if self._atexit is not None:
            try:
                atexit.unregister(self._atexit)
            except Exception:
                pass
            self._atexit = None
        self._terminate()
        self._cleanup_files()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return f"<NginxServer {self.url if self.port else '(not started)'} root={self.root}>"

    def read_error_log(self, limit=20000):
        try:
            with open(self.error_log, errors="replace") as f:
                text = f.read()
        except OSError:
            return ""
        return text[-limit:]

    # -- internals -----------------------------------------------------------------
    def _user_directive(self):
        if os.geteuid() != 0:
            return ""  # workers run as the current user
        user = "nobody"
        try:
            pwd.getpwnam(user)
        except KeyError:
            return ""
        group = None
        for name in ("nogroup", "nobody"):
            try:
                grp.getgrnam(name)
                group = name
                break
            except KeyError:
                pass
        return f"user {user} {group};" if group else f"user {user};"

    def _config(self):
        p = self.prefix
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        nofile = min(hard if hard != resource.RLIM_INFINITY else 65536, 65536)
        worker_connections = max(256, min(8192, nofile // 2))
        access = (f"access_log {p}/logs/access.log;" if self.access_log else "access_log off;")
        if self.access_log and self.access_log_format:
            fmt = self.access_log_format.replace("\\", "\\\\").replace("'", "\\'")
            access = f"log_format cfs '{fmt}';\n    access_log {p}/logs/access.log cfs;"
        tls_server = ""
        if self.tls:
            tls_server = f"""
    server {{
        listen {self.host}:{self.tls_port} ssl http2;
        server_name localhost;
        ssl_certificate {self._pki['server_cert']};
        ssl_certificate_key {self._pki['server_key']};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:1m;
        include {p}/conf/location.conf;
    }}"""
        location = f"""
        root {self.root};
        location / {{
            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw group:rw all:r;
            client_max_body_size 0;
            client_body_in_file_only off;
            autoindex on;
            autoindex_format json;
            autoindex_exact_size on;
        }}
"""
        with open(os.path.join(p, "conf", "location.conf"), "w") as f:
            f.write(location)
        return f"""
{self._user_directive()}
daemon off;
master_process on;
worker_processes {self.workers};
worker_rlimit_nofile {nofile};
pid {p}/nginx.pid;
error_log {p}/logs/error.log info;
events {{
    worker_connections {worker_connections};
    multi_accept on;
}}
http {{
    types {{ }}
    default_type application/octet-stream;
    {access}
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests {self.keepalive_requests};
    client_body_temp_path {p}/tmp/body;
    client_body_buffer_size 1m;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
    server_tokens off;
    {self.extra_http_conf}
    server {{
        listen {self.host}:{self.port} reuseport;
        server_name localhost;
        include {p}/conf/location.conf;
    }}
{tls_server}
}}
"""

    def _launch(self):
        conf = os.path.join(self.prefix, "conf", "nginx.conf")
        with open(conf, "w") as f:
            f.write(self._config())
        stderr_path = os.path.join(self.prefix, "logs", "stderr.log")
        # Check the configuration first: a clear message beats a timeout.
        check = subprocess.run([NGINX_BIN, "-t", "-q", "-p", self.prefix, "-c", conf,
                                "-e", self.error_log], capture_output=True, text=True)
        if check.returncode != 0:
            raise ServerStartError(f"nginx -t rejected {conf}:\n{check.stderr}\n"
                                   f"{self.read_error_log()}")
        with open(stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [NGINX_BIN, "-p", self.prefix, "-c", conf, "-e", self.error_log],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        ports = [self.port] + ([self.tls_port] if self.tls else [])
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if all(_port_open(self.host, port) for port in ports):
                return
            time.sleep(0.05)
        rc = self.proc.poll()
        self._terminate()
        try:
            with open(stderr_path, errors="replace") as f:
                stderr = f.read()[-5000:]
        except OSError:
            stderr = ""
        state = f"exited with {rc}" if rc is not None else f"not listening after {self.start_timeout}s"
        raise ServerStartError(
            f"nginx on {self.host}:{ports} {state}\n--- stderr ---\n{stderr}\n"
            f"--- {self.error_log} ---\n{self.read_error_log()}")

    def _terminate(self):
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # fast shutdown; the master stops its workers
            try:
                proc.wait(timeout=10)
                return
            except subprocess.TimeoutExpired:
                pass
            # The master did not stop: kill its whole process group (its own session, made
            # by start_new_session; the unreaped master keeps the group id ours).
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def _cleanup_files(self):
        if self.prefix and os.path.isdir(self.prefix):
            shutil.rmtree(self.prefix, ignore_errors=True)
        self.prefix = None


if __name__ == "__main__":  # manual use: python3 tests/servers/nginx.py
    with NginxServer() as srv:
        print(srv.url, srv.tls_url, srv.ca_file, srv.root, flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
