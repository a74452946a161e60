#!/usr/bin/env python3
"""Compressed reads and writes: cloudfiles_store against cloud-files with the same codec.

    python3 benchmarks/compression.py [--count 10000] [--size 65536] [--codecs gzip,zstd]
                                      [--concurrency 16] [--rounds 1] [--dir /tmp]
                                      [--backend file|s3]

Workload: COUNT objects of SIZE bytes of compressible text (about 4:1 with gzip), written
with compress=CODEC at the same level for both, then read back decoded, by each client in a
fresh process:
- cloudfiles_store: CloudFilesStore(url, concurrency=C).setitems(items, compress=CODEC),
  .getitems(keys) (the engine's worker threads encode and decode, the GIL released);
- cloud-files: CloudFiles(url, num_threads=C, green=False).puts(items, compress=CODEC),
  .get(keys) (Python threads; codecs from deflate/zstandard, under and around the GIL).
Backends:
- file (default): a directory under --dir. Both use CloudFiles' on-disk convention
  (K.gz / K.zstd), so each reads what the other wrote.
- s3: one SeaweedFS `weed mini` S3 gateway on 127.0.0.1 (signatures checked), started here;
  the objects carry Content-Encoding. cloud-files reaches it through its
  `s3://http://127.0.0.1:PORT/bucket/...` form with keys from a temporary CLOUD_FILES_DIR.
  The server shares the machine's cores with the client.
The read phase of each client reads its own objects. Reported: objects/s and the
process's CPU seconds (user + system, every thread) per 1,000 objects, per phase.
Needs the cloud-files package (pip install cloud-files) next to cloudfiles_store.
"""
import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))


def payload(i, size):
    rnd = random.Random(i)
    words = [b"alpha", b"beta", b"gamma", b"delta", b"epsilon", b"zeta", b"eta", b"theta",
             b"iota", b"kappa", b"lambda", b"mu"]
    out = bytearray()
    while len(out) < size:
        out += b"%08d " % rnd.randrange(10 ** 8) + b" ".join(rnd.choice(words) for _ in range(6)) + b"\n"
    return bytes(out[:size])


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def worker(spec):
    """One client, one codec: write then read; prints a JSON line."""
    client, codec, count, size, conc, level = (
        spec[k] for k in ("client", "codec", "count", "size", "conc", "level"))
    keys = [f"obj/{i:06d}" for i in range(count)]
    items = {k: payload(i, size) for i, k in enumerate(keys)}
    url = spec["url"]
    if client == "cloudfiles_store":
        sys.path.insert(0, REPO)
        from cloudfiles_store import CloudFilesStore
        store = CloudFilesStore(url, concurrency=conc, **spec.get("options", {}))

        def write():
            store.setitems(items, compress=codec, level=level)

        def read():
            return store.getitems(keys)
    else:
        from cloudfiles import CloudFiles
        cf = CloudFiles(url, num_threads=conc, green=False, parallel=1, progress=False)

        def write():
            cf.puts(list(items.items()), compress=codec, compression_level=level, raw=False)

        def read():
            return {r["path"]: r["content"] for r in cf.get(keys, raw=False, raise_errors=True)}
    out = {"client": client, "codec": codec, "level": level, "count": count, "size": size, "concurrency": conc}
    for phase, fn in (("write", write), ("read", read)):
        c0, t0 = cpu(), time.perf_counter()
        got = fn()
        t, c = time.perf_counter() - t0, cpu() - c0
        if phase == "read":
            assert len(got) == count and all(got[k] == items[k] for k in keys), "read back differs"
        out[phase] = {"objects_per_s": count / t, "seconds": t, "cpu_s_per_1k": 1000 * c / count}
    print(json.dumps(out), flush=True)


def stored(backend, where):
    """(bytes stored / bytes written is computed by the caller) the stored bytes, and what
    marks the encoding: the file suffixes (file://) or the Content-Encoding values (S3)."""
    if backend == "file":
        sizes = [os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(where) for f in fs]
        marks = sorted({os.path.splitext(f)[1] for _, _, fs in os.walk(where) for f in fs})
        return sum(sizes), marks
    srv, prefix = where
    client = srv.client()
    total, marks = 0, set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=srv.bucket, Prefix=prefix + "/"):
        for i, o in enumerate(page.get("Contents", [])):
            total += o["Size"]
            if i == 0:  # one HEAD a page: the encoding is the same for every object
                head = client.head_object(Bucket=srv.bucket, Key=o["Key"])
                marks.add(head.get("ContentEncoding", ""))
    return total, sorted(marks)


def s3_env(srv, workdir):
    """The environment of a worker on S3: cloud-files reads its keys from
    CLOUD_FILES_DIR/secrets/aws-secret.json; nothing is read from ~."""
    from cli_cp import cloudfiles_home

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CLOUD_"))}
    cfdir = cloudfiles_home(srv, workdir)
    env.update({"CLOUD_FILES_DIR": cfdir, "CLOUD_VOLUME_DIR": cfdir,
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_SHARED_CREDENTIALS_FILE": os.path.join(workdir, "no-credentials"),
                "AWS_CONFIG_FILE": os.path.join(workdir, "no-config")})
    return env


def run_round(args, rnd, rows, srv, workdir, env):
    levels = dict(kv.split("=") for kv in args.levels.split(","))
    for codec in args.codecs.split(","):
        for client in args.clients.split(","):
            spec = dict(client=client, codec=codec, count=args.count, size=args.size,
                        conc=args.concurrency, level=int(levels[codec]))
            if srv is None:
                root = tempfile.mkdtemp(prefix=f"cfs-bench-{client}-{codec}-", dir=args.dir)
                spec["url"], where = "file://" + root, root
            else:
                prefix = f"r{rnd}-{codec}-{client}"
                where = (srv, prefix)
                if client == "cloudfiles_store":
                    spec["url"], spec["options"] = srv.url(prefix), srv.store_options()
                else:
                    spec["url"] = f"s3://{srv.endpoint}/{srv.bucket}/{prefix}/"
            try:
                p = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                                   capture_output=True, text=True, timeout=3600, env=env)
                total, marks = stored(args.backend, where) if p.returncode == 0 else (0, [])
            finally:
                if srv is None:
                    shutil.rmtree(where, ignore_errors=True)
            if p.returncode != 0:
                print(f"{client} {codec}: failed\n{p.stderr[-2000:]}", file=sys.stderr)
                continue
            r = json.loads(p.stdout.strip().splitlines()[-1])
            r.update(round=rnd, backend=args.backend, stored_ratio=args.count * args.size / max(total, 1),
                     marks=marks)
            rows.append(r)
            print(f"[{rnd}] {codec:<5} {client:<17} write {r['write']['objects_per_s']:8.0f} obj/s "
                  f"{r['write']['cpu_s_per_1k']:6.3f} CPU s/1k | read {r['read']['objects_per_s']:8.0f} obj/s "
                  f"{r['read']['cpu_s_per_1k']:6.3f} CPU s/1k | stored {r['stored_ratio']:.1f}:1 {marks}",
                  flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--size", type=int, default=65536)
    ap.add_argument("--codecs", default="gzip,zstd")
    ap.add_argument("--levels", default="gzip=6,zstd=3,br=5",
                    help="the same level for both clients (cloud-files' own gzip default is 9)")
    ap.add_argument("--clients", default="cloudfiles_store,cloud-files")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--dir", default=None, help="where the file:// stores go (default: a temp dir)")
    ap.add_argument("--backend", choices=("file", "s3"), default="file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    rows = []
    if args.backend == "file":
        for rnd in range(args.rounds):
            run_round(args, rnd, rows, None, None, None)
    else:
        from seaweedfs import SeaweedFSServer

        workdir = tempfile.mkdtemp(prefix="cfs-bench-s3-")
        try:
            with SeaweedFSServer() as srv:
                env = s3_env(srv, workdir)
                for rnd in range(args.rounds):
                    run_round(args, rnd, rows, srv, workdir, env)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({"loadavg": os.getloadavg(), "rows": rows}))


if __name__ == "__main__":
    main()
