#!/usr/bin/env python3
"""Benchmark cloudfiles_store against wrk (the physical limit), a urllib3 thread pool and peers.

    python3 benchmarks/run.py [--quick] [--workloads get64k,get16k,...] [--concurrency 16,64,256]
                              [--runs N] [--clients ...] [--no-install]

Workloads (full sizes; --quick uses fewer objects, one round, concurrency 64, ~1-2 minutes):
  get64k      10,000 x 64 KiB GETs              get16k     20,000 x 16 KiB GETs
  s3get64k    the 64 KiB GETs over S3 (SigV4)   ranges     2,000 ranges of 1-64 KiB in a 256 MiB shard
  get1m       256 x 1 MiB (4 passes)            get64m     8 x 64 MiB (2 passes)
  put64k      10,000 x 64 KiB PUTs              stream64k  1.25 GiB of 64 KiB objects via iter_get (RSS)
  zarr3_read / zarr3_write  a 1 GiB zarr 3 array, 1 MiB uncompressed chunks
  zarr2_read  zarr 2.18 reading a 512 MiB array (own venv, made by .ci/zarr2-env)
  list100k    listing 100,000 keys through nginx's JSON index
Clients: wrk, cloudfiles_store, urllib3_threads, fsspec_http, s3fs, obstore, cloud-files, tensorstore.
Every workload at 16, 64 and 256 with 3 rounds takes an hour or more on 2 busy cores; the
figures in BENCHMARKS.md came from several narrower runs merged with benchmarks/report.py.

What it does:
1. Set-up: a virtualenv benchmarks/.venv (with the system site-packages, so the installed
   cloudfiles_store and urllib3 are seen) into which pip installs matplotlib and the peers
   (fsspec+aiohttp, s3fs, obstore, cloud-files, tensorstore); each one that fails is skipped
   with the reason printed. Then the script re-runs itself with that interpreter.
2. Data: objects written directly as files under benchmarks/.data (gitignored, reused;
   about 3.7 GB once every workload has run in both sizes).
3. nginx on 127.0.0.1 (tests/servers/nginx.py) serving that directory; loopback only.
4. Every client runs every workload at every concurrency, each measurement in a fresh process;
   rounds are interleaved (client order rotated per round) so machine-load drift hits everyone.
5. Results: JSON under benchmarks/results/ (gitignored); BENCHMARKS.md (full runs) or
   benchmarks/results/quick.md (--quick); PNG plots (benchmarks/plots, or results/plots-quick).
   Findings written by hand live in benchmarks/NOTES.md and are included in BENCHMARKS.md.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
VENV = os.path.join(HERE, ".venv")
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)

import datasets  # noqa: E402
from datasets import KiB, MiB  # noqa: E402

OURS = "cloudfiles_store"
LIMIT = "wrk"
BASELINE = "urllib3_threads"
# zarr_memorystore: zarr reading the same array from its own MemoryStore in the same process
# (the zarr 3 reads' ceiling: what zarr's own event loop thread and decoding allow)
MEMORY = "zarr_memorystore"
OURS_H2 = "cloudfiles_store_h2"  # ours with http2=True (not in the default list: --clients)
ALL_CLIENTS = [LIMIT, OURS, BASELINE, "fsspec_http", "s3fs", "obstore", "cloud-files", "tensorstore", MEMORY]
# pip requirement(s) and import probe per optional peer
PEERS = {
    "fsspec_http": (["fsspec", "aiohttp"], "import fsspec, aiohttp"),
    "s3fs": (["s3fs"], "import s3fs"),
    "obstore": (["obstore"], "import obstore"),
    "cloud-files": (["cloud-files"], "import cloudfiles"),
    "tensorstore": (["tensorstore"], "import tensorstore"),
    # the CLI peer of benchmarks/cli_cp.py (`aws s3 cp`), installed with the others
    "awscli": (["awscli"], "import awscli"),
}

# name -> (object set or "shard", description template, passes full/quick)
WORKLOADS = {
    "get64k": {"set": "o64k", "passes": (1, 1)},
    # the same 64 KiB objects through the S3 protocol: path-style GETs signed with SigV4 (nginx
    # ignores the signature), for the clients that speak S3 (s3fs is one of them)
    "s3get64k": {"set": "o64k", "passes": (1, 1), "op": "s3get"},
    "get16k": {"set": "o16k", "passes": (1, 1)},
    "get1m": {"set": "o1m", "passes": (4, 2)},
    "get64m": {"set": "o64m", "passes": (2, 1)},
    "ranges": {"set": "shard", "passes": (1, 1)},
    "put64k": {"set": "o64k", "passes": (1, 1), "op": "put"},
    # the 64 KiB set streamed twice (1.25 GiB) through a bounded-memory iterator: peak RSS
    "stream64k": {"set": "o64k", "passes": (1, 1), "op": "stream", "reps": 2},
    # zarr 3 end to end: one uint8 array, 1 MiB uncompressed chunks, 1 GiB (quick 128 MiB)
    "zarr3_read": {"set": "zarr3", "passes": (1, 1), "op": "zarr3_read"},
    "zarr3_write": {"set": "zarr3", "passes": (1, 1), "op": "zarr3_write"},
    # the same shape with zstd chunks (about 2:1): decoding in zarr's thread dominates
    "zarr3z_read": {"set": "zarr3z", "passes": (1, 1), "op": "zarr3_read"},
    # zarr 2.18 (its own venv) reading a zarr 2 format array: our mapping vs FSStore (+ TensorStore)
    "zarr2_read": {"set": "zarr2", "passes": (1, 1), "op": "zarr2_read"},
    # one directory of 100,000 keys (quick 20,000) listed through nginx's JSON autoindex, 5 times
    "list100k": {"set": "list", "passes": (1, 1), "op": "list", "listings": (5, 2)},
}
DEFAULT_WORKLOADS = list(WORKLOADS)


def log(*a):
    print(*a, flush=True)


# ------------------------------------------------------------------------------ set-up
def in_venv():
    return os.path.realpath(sys.prefix) == os.path.realpath(VENV)


def setup_venv(args):
    """Create benchmarks/.venv and pip install matplotlib + peers; return per-package notes."""
    notes = {}
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        log(f"set-up: creating {VENV} (with system site-packages)")
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", VENV], check=True)
    wanted = [("matplotlib", ["matplotlib"], "import matplotlib")]
    wanted += [(name, reqs, probe) for name, (reqs, probe) in PEERS.items()]
    for name, reqs, probe in wanted:
        if subprocess.run([py, "-c", probe], capture_output=True).returncode == 0:
            continue
        log(f"set-up: pip install {' '.join(reqs)}")
        p = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", *reqs],
                           capture_output=True, text=True)
        if p.returncode != 0:
            notes[name] = "pip install failed: " + (p.stderr.strip().splitlines() or ["?"])[-1]
            log(f"set-up: {name}: {notes[name]}")
    return py, notes


# ------------------------------------------------------------------------------ helpers
def machine_info():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    ngx = subprocess.run(["/usr/sbin/nginx", "-v"], capture_output=True, text=True)
    curl = subprocess.run(["pkg-config", "--modversion", "libcurl"], capture_output=True, text=True)
    # which build of ours was measured: the tree's commit, whether csrc/ had uncommitted
    # changes, and when the extension module was built (the lead rebuilds it in place)
    tree = {}
    try:
        tree["commit"] = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                        capture_output=True, text=True).stdout.strip()
        tree["csrc_dirty"] = bool(subprocess.run(["git", "-C", REPO, "status", "--porcelain", "csrc"],
                                                 capture_output=True, text=True).stdout.strip())
        import glob

        so = glob.glob(os.path.join(REPO, "cloudfiles_store", "_core*.so"))
        if so:
            tree["core_built"] = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(so[0])))
    except Exception:  # noqa: BLE001
        pass
    return {
        "tree": tree,
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_mib": mem,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "nginx": (ngx.stderr or ngx.stdout).strip(),
        "curl": "libcurl " + (curl.stdout.strip() or "?"),
        "loadavg_start": os.getloadavg(),
    }


def probe_client(py, name):
    """None if the client can run here, else the reason it cannot."""
    if name == LIMIT:
        import wrk_client

        return None if wrk_client.available() else "wrk not installed (apt-get install wrk)"
    if name in (OURS, OURS_H2):
        code = "import cloudfiles_store; cloudfiles_store.CloudFilesStore"
    elif name == MEMORY:
        code = "import zarr; zarr.storage.MemoryStore"
    elif name == BASELINE:
        code = "import urllib3"
    else:
        code = PEERS[name][1]
    p = subprocess.run([py, "-c", code], capture_output=True, text=True, cwd="/", env=worker_env(None))
    if p.returncode != 0:
        return "cannot import: " + (p.stderr.strip().splitlines() or ["?"])[-1]
    return None


def worker_env(ca_file):
    """The workers' environment: the checkout on PYTHONPATH (the venv does not install
    cloudfiles_store), and with TLS every way a peer learns of a CA file pointed at the
    test CA (each client's own option is also set in worker.py)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if ca_file:
        for k in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "TENSORSTORE_CA_BUNDLE"):
            env[k] = ca_file
    return env


WORKER_ENV = None  # set in main()
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's, from ca-certificates


def system_and_test_cas(test_ca, directory):
    """A CA file of the system bundle with the test CA appended, in directory: what a client of
    a real cloud trusts (~140 CAs), and the test server's certificate verifies against it."""
    path = os.path.join(directory, "system-and-test-cas.pem")
    with open(SYSTEM_CA_BUNDLE) as system, open(test_ca) as test, open(path, "w") as out:
        out.write(system.read() + test.read())
    return path


def run_worker(py, spec, tmpdir, timeout):
    spec_path = os.path.join(tmpdir, "spec.json")
    out_path = os.path.join(tmpdir, "out.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    if os.path.exists(out_path):
        os.unlink(out_path)
    try:
        p = subprocess.run([py, os.path.join(HERE, "worker.py"), spec_path, out_path],
                           capture_output=True, text=True, timeout=timeout, cwd=HERE, env=WORKER_ENV)
    except subprocess.TimeoutExpired:
        return {"client": spec["client"], "fatal": f"timed out after {timeout}s"}
    try:
        with open(out_path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"client": spec["client"],
                "fatal": f"worker exited {p.returncode} without a result: {p.stderr[-1500:]}"}


ZARR2_CLIENTS = (OURS, "fsspec_http", "tensorstore")


def zarr2_env(args):
    """(python, None) of a venv with zarr 2.18 + fsspec/aiohttp, made by the project's
    .ci/zarr2-env into benchmarks/.venv-zarr2; or (None, reason)."""
    script = os.path.join(REPO, ".ci", "zarr2-env")
    if not os.path.exists(script):
        return None, ".ci/zarr2-env not found"
    env = dict(os.environ, CFS_ZARR2_VENV=os.path.join(HERE, ".venv-zarr2"))
    if in_venv():  # make the zarr 2 venv from the base interpreter, not from ours
        env["PYTHON"] = os.path.join(sys.base_prefix, "bin", "python3")
    p = subprocess.run(["bash", script], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        return None, "zarr2-env failed: " + (p.stderr.strip().splitlines() or ["?"])[-1]
    zpy = p.stdout.strip().splitlines()[-1]
    if subprocess.run([zpy, "-c", "import fsspec, aiohttp"], capture_output=True).returncode != 0:
        if args.no_install:
            return None, "fsspec/aiohttp missing in the zarr 2 venv (--no-install)"
        q = subprocess.run([zpy, "-m", "pip", "install", "-q", "--disable-pip-version-check", "fsspec", "aiohttp"],
                           capture_output=True, text=True)
        if q.returncode != 0:
            return None, "pip install fsspec aiohttp failed: " + (q.stderr.strip().splitlines() or ["?"])[-1]
    return zpy, None


def stored_checksum(directory, keys):
    """Checksum of what a PUT run left on the server's disk (missing files count as wrong)."""
    crcs = []
    for k in keys:
        try:
            with open(os.path.join(directory, k), "rb") as f:
                crcs.append(datasets.object_crc(k, f.read()))
        except OSError:
            crcs.append(0)
    return datasets.combine(crcs)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ------------------------------------------------------------------------------ main
def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer objects, one run, concurrency 64 (~2 min)")
    ap.add_argument("--workloads", default=None, help="comma list of: " + ",".join(WORKLOADS))
    ap.add_argument("--concurrency", default=None, help="comma list (default 16,64,256; quick: 64)")
    ap.add_argument("--runs", type=int, default=None, help="rounds (default 3; quick: 1)")
    ap.add_argument("--clients", default=None, help="comma list of: " + ",".join(ALL_CLIENTS))
    ap.add_argument("--data-dir", default=os.path.join(HERE, ".data"))
    ap.add_argument("--wrk-duration", type=float, default=None, help="seconds per wrk run (default 5; quick 1)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds before a client run is killed")
    ap.add_argument("--report", default=None, help="markdown output (default BENCHMARKS.md; quick: results/quick.md)")
    ap.add_argument("--no-install", action="store_true", help="no venv/pip: use this interpreter as is")
    ap.add_argument("--tls", action="store_true",
                    help="over HTTPS: nginx with TLS 1.3 and the test CA; every client verifies with it")
    ap.add_argument("--delay-ms", type=float, default=None,
                    help="put benchmarks/delayproxy.c in front of nginx, holding bytes this long each way "
                         "(one round trip = 2x); 0 measures the proxy's own cost")
    ap.add_argument("--jitter-ms", type=float, default=0, help="with --delay-ms: uniform extra delay 0..N ms")
    ap.add_argument("--cold", action="store_true",
                    help="no warm-up: the timed pass opens the connections (TCP and TLS handshakes)")
    ap.add_argument("--system-cas", action="store_true",
                    help="with --tls: every client trusts the system CA bundle with the test CA appended, "
                         "as a client of a real cloud trusts ~140 CAs (a one-certificate file hides what "
                         "parsing the bundle costs per connection)")
    ap.add_argument("--tag", default=None, help="name of the results file and report (default: quick/full)")
    ap.add_argument("--setup-notes", default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if not args.no_install and not in_venv():
        py, notes = setup_venv(args)
        env = dict(os.environ)
        os.execve(py, [py, os.path.abspath(__file__), *argv, "--setup-notes", json.dumps(notes)], env)
    setup_notes = json.loads(args.setup_notes) if args.setup_notes else {}
    py = sys.executable
    quick = args.quick
    workloads = args.workloads.split(",") if args.workloads else DEFAULT_WORKLOADS
    for w in workloads:
        if w not in WORKLOADS:
            sys.exit(f"unknown workload {w!r}; known: {', '.join(WORKLOADS)}")
    concs = [int(c) for c in (args.concurrency or ("64" if quick else "16,64,256")).split(",")]
    runs = args.runs or (1 if quick else 3)
    clients = args.clients.split(",") if args.clients else list(ALL_CLIENTS)
    wrk_duration = args.wrk_duration or (1.0 if quick else 5.0)
    shown = []
    skip_next = False
    for a in argv:  # the command as the user typed it (without the internal --setup-notes)
        if skip_next:
            skip_next = False
        elif a == "--setup-notes":
            skip_next = True
        else:
            shown.append(a)
    command = " ".join(["python3 benchmarks/run.py", *shown])

    info = machine_info()
    log(f"machine: {info['nproc']} cores, {info['cpu']}, load {info['loadavg_start']}")
    skipped = {}
    for c in clients:
        reason = probe_client(py, c)
        if reason and c in setup_notes:
            reason = f"{setup_notes[c]}; {reason}"
        if reason:
            skipped[c] = reason
            log(f"skip {c}: {reason}")
    active = [c for c in clients if c not in skipped]

    # ---- data
    data = datasets.Data(args.data_dir)
    wl_items = {}
    for w in workloads:
        spec = WORKLOADS[w]
        if spec["set"] == "zarr2":
            z = data.ensure_zarr2("quick" if quick else "full", log=log)
            wl_items[w] = {"zarr": z, "n": z["nchunks"], "payload": z["nbytes"], "object_size": MiB,
                           "op": "zarr2_read", "expected": z["crc"],
                           "desc": f"zarr 2.18 read, {z['nbytes'] / 2**30:.2f} GiB uint8 array, "
                                   f"{z['nchunks']:,} x 1 MiB uncompressed chunks"}
        elif spec["set"] == "list":
            nkeys = datasets.LIST_QUICK if quick else datasets.LIST_FULL
            ldir, lcrc = data.ensure_listing(nkeys, log=log)
            nl = spec["listings"][1 if quick else 0]
            wl_items[w] = {"n": nl * nkeys, "listings": nl, "nkeys": nkeys, "payload": 0, "object_size": 0,
                           "op": "list", "expected": lcrc, "url_path": f"/bucket/list/{nkeys}",
                           "desc": f"listing {nkeys:,} keys (nginx JSON index), {nl} times"}
        elif spec["set"] in ("zarr3", "zarr3z"):
            zs = spec["set"] == "zarr3z"
            z = (data.ensure_zarr3z if zs else data.ensure_zarr3)("quick" if quick else "full", log=log)
            verb = "read" if spec["op"] == "zarr3_read" else "write"
            wl_items[w] = {"zarr": z, "n": z["nchunks"], "payload": z["nbytes"], "object_size": MiB,
                           "op": spec["op"],
                           "expected": z["crc"] if verb == "read" else z["chunk_crcs"],
                           "desc": f"zarr 3 {verb}, {z['nbytes'] / 2**30:.2f} GiB uint8 array, "
                                   f"{z['nchunks']:,} x 1 MiB {'zstd (about 2:1)' if zs else 'uncompressed'} chunks"}
        elif spec["set"] == "shard":
            n = datasets.RANGES_QUICK if quick else datasets.RANGES_FULL
            ranges, crcs = data.ranges(n)
            sizes = [e - s for s, e in ranges]
            wl_items[w] = {"ranges": ranges, "expected": datasets.combine(crcs), "n": n,
                           "payload": sum(sizes), "desc": f"{n:,} ranges of 1-64 KiB in a 256 MiB shard",
                           "object_size": sum(sizes) / n}
        else:
            size, nfull, nquick, _ = datasets.OBJECT_SETS[spec["set"]]
            n = nquick if quick else nfull
            keys, crcs = data.ensure_objects(spec["set"], n, log=log)
            label = f"{size // MiB} MiB" if size >= MiB else f"{size // KiB} KiB"
            op = spec.get("op", "get")
            reps = spec.get("reps", 1)
            desc = f"{n:,} x {label} {op.upper()}"
            if op == "s3get":
                desc = f"{n:,} x {label} GET over S3 (SigV4, path-style)"
            if op == "stream":
                desc = f"{reps} x {n:,} x {label} streamed ({reps * n * size / 2**30:.2f} GiB)"
            wl_items[w] = {"keys": keys * reps, "expected": datasets.combine(crcs * reps), "n": n * reps,
                           "payload": reps * n * size, "desc": desc, "object_size": size, "op": op}
        wl_items[w]["passes"] = spec["passes"][1 if quick else 0]

    # ---- server
    from tests.servers.nginx import NginxServer

    # nginx as tests/servers/nginx.py configures it (2 workers, sendfile, keep-alive, no access
    # log). No open_file_cache: with 30,000+ files it ran nginx out of descriptors (HTTP 500).
    srv = NginxServer(root=data.root, tls=args.tls, workers=2)
    srv.start()
    global WORKER_ENV
    ca_file = srv.ca_file if args.tls else None
    if ca_file and args.system_cas:
        ca_file = system_and_test_cas(srv.ca_file, os.path.dirname(data.root))
    WORKER_ENV = worker_env(ca_file)
    scheme = "https" if args.tls else "http"
    port = srv.tls_port if args.tls else srv.port
    proxy = None
    if args.delay_ms is not None:
        import delayproxy

        proxy = delayproxy.DelayProxy(f"127.0.0.1:{port}", args.delay_ms, args.jitter_ms).start()
        port = proxy.port
        log(f"delay proxy: 127.0.0.1:{port} -> nginx, {args.delay_ms} ms each way (+0..{args.jitter_ms} ms)")
    server_pids = serving_pids(srv, proxy)
    host_port = f"127.0.0.1:{port}"
    srv_url = f"{scheme}://{host_port}"
    log(f"nginx: {srv_url} root {data.root}")
    import worker
    import wrk_client

    # PUT targets: bucket/put/run-PID/<client>-c<C>-r<round>, removed after each measurement;
    # one directory per benchmark process, so two runs never delete each other's objects
    zarr2_py, zarr2_note = None, None
    if "zarr2_read" in workloads:
        zarr2_py, zarr2_note = zarr2_env(args)
        log(f"zarr 2 environment: {zarr2_py or zarr2_note}")
    put_base = os.path.join(data.bucket, "put")
    os.makedirs(put_base, exist_ok=True)
    os.chmod(put_base, 0o777)  # nginx's workers (nobody) create the objects
    for old in os.listdir(put_base):  # left over from interrupted runs
        if old.startswith("run-") and old[4:].isdigit() and not os.path.exists(f"/proc/{old[4:]}"):
            shutil.rmtree(os.path.join(put_base, old), ignore_errors=True)
    put_root = os.path.join(put_base, f"run-{os.getpid()}")
    os.makedirs(put_root, exist_ok=True)
    os.chmod(put_root, 0o777)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    tag = args.tag or ("quick" if quick else "full")
    resdir = os.path.join(HERE, "results")
    os.makedirs(resdir, exist_ok=True)
    res_path = os.path.join(resdir, f"{tag}-{stamp}.json")
    doc = {"command": command, "quick": quick, "machine": info, "skipped": skipped,
           "tls": args.tls, "system_cas": args.system_cas, "delay_ms": args.delay_ms, "jitter_ms": args.jitter_ms, "cold": args.cold,
           "workloads": {w: {k: v for k, v in wl_items[w].items() if k not in ("keys", "ranges")}
                         for w in workloads},
           "concurrency": concs, "runs": runs, "clients": active, "results": []}
    versions = {}

    def save():
        doc["versions"] = versions
        for p in (res_path, os.path.join(resdir, f"latest-{tag}.json" if args.tag else
                                         "latest-quick.json" if quick else "latest.json")):
            with open(p + ".tmp", "w") as f:
                json.dump(doc, f, indent=1)
            os.replace(p + ".tmp", p)

    t_start = time.time()
    try:
        with tempfile.TemporaryDirectory(prefix="cfs-bench-") as tmp:
            for rnd in range(runs):
                for w in workloads:
                    it = wl_items[w]
                    for conc in concs:
                        order = active[rnd % len(active):] + active[:rnd % len(active)] if active else []
                        for c in order:
                            base = f"{srv_url}/bucket/{WORKLOADS[w]['set']}"
                            n_per_pass = it["n"]
                            is_put = it.get("op") == "put"
                            put_dir = os.path.join(put_root, f"{c}-c{conc}-r{rnd}")
                            src_dir = os.path.join(data.bucket, WORKLOADS[w]["set"])
                            na = None
                            op = it.get("op")
                            if c in worker.CLIENTS and op in ("zarr3_read", "zarr3_write"):
                                na = worker.CLIENTS[c].no_zarr3 or (worker.CLIENTS[c].no_put if op == "zarr3_write" else None)
                            elif c == LIMIT and op == "zarr3_write":
                                na = "a PUT limit is the put64k row"
                            elif c in worker.CLIENTS and is_put:
                                na = worker.CLIENTS[c].no_put
                            elif c in worker.CLIENTS and it.get("op") == "stream":
                                na = worker.CLIENTS[c].no_stream
                            elif c == LIMIT and it.get("op") == "stream":
                                na = "wrk keeps no bodies: its limit is the GET row"
                            if c in worker.CLIENTS and op == "list":
                                na = worker.CLIENTS[c].no_list
                            if c in worker.CLIENTS and op == "s3get":
                                na = worker.CLIENTS[c].no_s3
                            elif c in worker.CLIENTS and worker.CLIENTS[c].no_http:
                                na = worker.CLIENTS[c].no_http
                            if c == MEMORY and op != "zarr3_read":
                                na = "the zarr 3 reads' ceiling only"
                            if op == "zarr2_read" and c in worker.CLIENTS:
                                if c not in ZARR2_CLIENTS:
                                    na = "no zarr 2 store"
                                elif c != "tensorstore" and zarr2_py is None:
                                    na = f"no zarr 2 environment: {zarr2_note}"
                            if op == "zarr2_read" and c == LIMIT:
                                op = "zarr3_read"  # wrk: the same GETs of every chunk file
                            if na:
                                r = {"client": c, "na": na}
                            elif op == "list" and c == LIMIT:  # wrk: GET the index again and again
                                r = wrk_client.run(os.path.join(tmp, "wrk"), srv_url, [it["url_path"] + "/"],
                                                   1, wrk_duration, 0)
                                if not r.get("fatal"):
                                    r["objects"] = r["requests"] * it["nkeys"]
                                    r["bytes"] = r["wire_bytes"]
                            elif op == "list":
                                lspec = {"client": c, "op": "list", "base_url": srv_url + it["url_path"],
                                         "concurrency": conc, "listings": it["listings"], "expect": it["nkeys"],
                                         "warmup": 1, "passes": 1, "ca_file": ca_file}
                                r = run_worker(py, lspec, tmp, args.timeout)
                            elif op == "zarr2_read":
                                z = it["zarr"]
                                zspec = {"client": c, "op": op, "concurrency": conc, "chunks": z["chunks"], "ca_file": ca_file,
                                         "nchunks": z["nchunks"], "nbytes": z["nbytes"],
                                         "url": f"{srv_url}/bucket/zarr2/{os.path.basename(z['path'])}"}
                                r = run_worker(py if c == "tensorstore" else zarr2_py, zspec, tmp, args.timeout)
                            elif op in ("zarr3_read", "zarr3_write") and c != LIMIT:
                                z = it["zarr"]
                                zspec = {"client": c, "op": op, "concurrency": conc, "chunks": z["chunks"], "ca_file": ca_file,
                                         "nchunks": z["nchunks"], "nbytes": z["nbytes"], "source_dir": z["path"],
                                         "url": (f"{srv_url}/bucket/put/run-{os.getpid()}/{os.path.basename(put_dir)}" if op == "zarr3_write"
                                                 else f"{srv_url}/bucket/{WORKLOADS[w]['set']}/{os.path.basename(z['path'])}")}
                                r = run_worker(py, zspec, tmp, args.timeout)
                                if op == "zarr3_write" and not r.get("fatal") and not r.get("errors"):
                                    r["checksums"] = [datasets.chunk_checksum(put_dir)]
                            elif op == "zarr3_read":  # wrk: GET every chunk file
                                z = it["zarr"]
                                cdir = os.path.join(z["path"], "c")
                                paths = sorted("/" + os.path.relpath(os.path.join(d, f), data.root)
                                               for d, _, fs in os.walk(cdir if os.path.isdir(cdir) else z["path"])
                                               for f in fs if not f.startswith("."))
                                r = wrk_client.run(os.path.join(tmp, "wrk"), srv_url, paths,
                                                   min(conc, len(paths)), wrk_duration, MiB)
                            elif c == LIMIT and is_put:
                                # 16 distinct bodies cycled over the same keys, PUT again and again
                                paths = [(f"/bucket/put/run-{os.getpid()}/{os.path.basename(put_dir)}/{k}", "",
                                          os.path.join(src_dir, it["keys"][i % 16])) for i, k in enumerate(it["keys"])]
                                r = wrk_client.run(os.path.join(tmp, "wrk"), srv_url, paths,
                                                   min(conc, n_per_pass), wrk_duration, it["object_size"])
                            elif c == LIMIT:
                                if "ranges" in it:
                                    paths = [("/bucket/shard/shard", f"bytes={s}-{e - 1}") for s, e in it["ranges"]]
                                else:
                                    paths = [f"/bucket/{WORKLOADS[w]['set']}/{k}" for k in it["keys"]]
                                # never more connections than the other clients can have in flight
                                s0, (b0, j0) = worker.pids_cpu_s(server_pids), worker.machine_jiffies()
                                r = wrk_client.run(os.path.join(tmp, "wrk"), srv_url, paths,
                                                   min(conc, n_per_pass), wrk_duration,
                                                   it["payload"] / n_per_pass)
                                (b1, j1), s1 = worker.machine_jiffies(), worker.pids_cpu_s(server_pids)
                                r.update(server_cpu_s=s1 - s0, machine_busy=(b1 - b0) / max(1, j1 - j0))
                            else:
                                warm = min(2 * conc, n_per_pass // 2) if it["object_size"] <= MiB else 1
                                spec = {"client": c, "base_url": base, "concurrency": conc,
                                        "passes": 1 if args.cold else it["passes"],
                                        "warmup": 0 if args.cold else max(1, warm), "ca_file": ca_file,
                                        "server_pids": server_pids}
                                if "ranges" in it:
                                    spec["ranges"] = it["ranges"]
                                    spec["range_key"] = "shard"
                                    spec["base_url"] = f"{srv_url}/bucket/shard"
                                else:
                                    spec["keys"] = it["keys"]
                                if it.get("op") == "stream":
                                    spec["op"] = "stream"
                                if op == "s3get":
                                    spec["s3"] = {"endpoint": srv_url, "bucket": "bucket", "prefix": WORKLOADS[w]["set"],
                                                  "region": "us-east-1", "key": "benchkey", "secret": "benchsecret"}
                                if is_put:
                                    spec.update(op="put", source_dir=src_dir,
                                                base_url=f"{srv_url}/bucket/put/run-{os.getpid()}/{os.path.basename(put_dir)}")
                                r = run_worker(py, spec, tmp, args.timeout)
                                if is_put and not r.get("fatal"):
                                    r["checksums"] = [stored_checksum(put_dir, it["keys"])]
                            r.update(workload=w, concurrency=conc, round=rnd, loadavg1=os.getloadavg()[0])
                            if "version" in r:
                                versions[c] = r["version"]
                            if r.get("checksums"):
                                r["checksum_ok"] = all(x == it["expected"] for x in r["checksums"])
                            if is_put or op == "zarr3_write":
                                shutil.rmtree(put_dir, ignore_errors=True)
                            doc["results"].append(r)
                            save()
                            log(fmt_line(r))
                            if not srv.running():
                                raise RuntimeError("nginx died: " + srv.read_error_log(3000))
    finally:
        if proxy:
            proxy.stop()
        srv.stop()
        shutil.rmtree(put_root, ignore_errors=True)
    doc["elapsed_s"] = time.time() - t_start
    doc["machine"]["loadavg_end"] = os.getloadavg()
    save()
    log(f"results: {res_path}")

    import report

    md = args.report or (os.path.join(resdir, f"{args.tag}.md") if args.tag else
                         os.path.join(resdir, "quick.md") if quick else os.path.join(REPO, "BENCHMARKS.md"))
    plot_dir = (os.path.join(resdir, f"plots-{args.tag}") if args.tag else
                os.path.join(resdir, "plots-quick") if quick else os.path.join(HERE, "plots"))
    report.write(doc, md, plot_dir)
    log(f"report: {md}; plots: {plot_dir}")


def serving_pids(srv, proxy):
    """nginx's master and workers, and the delay proxy: the server side of the machine, whose
    CPU the worker counts per request."""
    pids = [srv.proc.pid]
    with open(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children") as f:
        pids += [int(p) for p in f.read().split()]
    return pids + ([proxy.proc.pid] if proxy else [])


def fmt_line(r):
    head = f"[{r.get('round', 0)}] {r['workload']:<7} c={r['concurrency']:<4} {r['client']:<17}"
    if r.get("na"):
        return f"{head} n/a: {r['na']}"
    if r.get("fatal"):
        return f"{head} FAILED: {r['fatal'][:300]}"
    wall = r["wall_s"] or 1e-9
    ops = r["objects"] / wall
    mbs = r["bytes"] / wall / 1e6
    cpu_k = 1000 * r["cpu_s"] / max(1, r["requests"])
    lat = f" p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms" if r.get("p50_ms") is not None else ""
    if r.get("server_cpu_s") is not None:
        lat += f"  server cpu {1000 * r['server_cpu_s'] / max(1, r['requests']):.3f} s/1k req"
    if r.get("machine_busy") is not None:
        lat += f"  machine busy {100 * r['machine_busy']:.0f}%"
    ck = {True: " checksum ok", False: " CHECKSUM MISMATCH", None: ""}[r.get("checksum_ok")]
    err = f" errors {r['errors']} ({r['first_error']})" if r.get("errors") else ""
    return (f"{head} {ops:9.0f} obj/s {mbs:8.1f} MB/s  cpu {cpu_k:.3f} s/1k req  "
            f"rss {r['maxrss_kib'] / 1024:.0f} MiB{lat}{ck}{err}")


if __name__ == "__main__":
    main()
