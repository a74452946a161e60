"""`cp -r` from the shell: ours against `cloudfiles cp` (cloud-files) and `aws s3 cp`
(awscli), on one local S3 server (SeaweedFS `weed mini`, signatures checked).

    python3 benchmarks/cli_cp.py                 # 10,000 x 64 KiB files, and one 1 GiB file
    python3 benchmarks/cli_cp.py --quick         # 1,000 x 64 KiB, one 128 MiB file
    python3 benchmarks/cli_cp.py --runs 3 --objects 2000 --big-mib 256
    python3 benchmarks/cli_cp.py --workloads big --ceiling   # and the server's own pace

Each tool copies a local directory up (`cp -r DIR s3://bucket/P/`) and back down
(`cp -r s3://bucket/P/ DIR2`), and one large file up and down; every run is checked (file
count and bytes), timed from the process start to its exit (start-up included: it is what a
user waits for), with the process's CPU time and peak RSS (os.wait4). The peers are set up to reach the local server only: cloud-files through
its `s3://http://127.0.0.1:PORT/bucket/...` form, awscli with `--endpoint-url`; both get the
keys from the environment and a temporary config (nothing read from ~). awscli gets
max_concurrent_requests = our concurrency (64); cloud-files keeps its defaults (its cp
takes no thread count; -p forks processes).

The peers come from benchmarks/.venv (cloud-files and awscli, as benchmarks/run.py's set-up
installs them); run.py's install step is reused: --no-install uses whatever is on PATH.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
VENV_BIN = os.path.join(HERE, ".venv", "bin")

KiB, MiB = 1024, 1024 * 1024
CONCURRENCY = 64


def log(*a):
    print(*a, flush=True)


def make_tree(root, n, size):
    os.makedirs(root, exist_ok=True)
    block = os.urandom(size)
    for i in range(n):
        sub = os.path.join(root, f"d{i // 1000:03d}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"f{i:06d}.bin"), "wb") as f:
            f.write(block[i % size:] + block[:i % size])  # distinct content per file


def make_big(path, size):
    with open(path, "wb") as f:
        chunk = os.urandom(16 * MiB)
        left = size
        while left > 0:
            n = min(left, len(chunk))
            f.write(chunk[:n])
            left -= n


def tree_stats(root):
    n = total = 0
    for d, _dirs, files in os.walk(root):
        for name in files:
            n += 1
            total += os.path.getsize(os.path.join(d, name))
    return n, total


def cloudfiles_home(srv, workdir):
    """A CLOUD_FILES_DIR under workdir holding srv's keys where cloud-files reads them
    (secrets/aws-secret.json: its environment path needs a session token)."""
    cfdir = os.path.join(workdir, "cloudfiles-home")
    os.makedirs(os.path.join(cfdir, "secrets"), exist_ok=True)
    with open(os.path.join(cfdir, "secrets", "aws-secret.json"), "w") as f:
        json.dump({"AWS_ACCESS_KEY_ID": srv.access_key_id,
                   "AWS_SECRET_ACCESS_KEY": srv.secret_access_key,
                   "AWS_DEFAULT_REGION": srv.region}, f)
    return cfdir


class Tools:
    def __init__(self, srv, workdir):
        self.srv = srv
        self.env = dict(os.environ)
        for var in list(self.env):
            if var.startswith("AWS_") or var.startswith("CLOUD_"):
                del self.env[var]
        cfdir = cloudfiles_home(srv, workdir)
        awscfg = os.path.join(workdir, "aws-config")
        with open(awscfg, "w") as f:
            f.write(f"[default]\nregion = {srv.region}\ns3 =\n  max_concurrent_requests = {CONCURRENCY}\n")
        self.env.update({
            "AWS_ACCESS_KEY_ID": srv.access_key_id, "AWS_SECRET_ACCESS_KEY": srv.secret_access_key,
            "AWS_DEFAULT_REGION": srv.region, "AWS_CONFIG_FILE": awscfg,
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(workdir, "no-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "CLOUD_FILES_DIR": cfdir, "CLOUD_VOLUME_DIR": cfdir,
            "PYTHONPATH": REPO,
        })
        py = os.path.join(VENV_BIN, "python")
        self.py = py if os.path.exists(py) else sys.executable
        cf = os.path.join(VENV_BIN, "cloudfiles")
        self.cloudfiles = cf if os.path.exists(cf) else shutil.which("cloudfiles")

    def s3(self, tool, prefix):
        b = self.srv.bucket
        if tool == "cloud-files":
            return f"s3://{self.srv.endpoint}/{b}/{prefix}/"
        return f"s3://{b}/{prefix}/"

    def cmd(self, tool, src, dst, recursive):
        r = ["-r"] if recursive else []
        if tool == "cloudfiles_store":
            return [sys.executable, "-m", "cloudfiles_store", "cp", *r, "-q", src, dst,
                    "-o", f"endpoint_url={self.srv.endpoint}", "--concurrency", str(CONCURRENCY)]
        if tool == "cloud-files":
            return [self.cloudfiles, "cp", *r, src, dst]
        if tool == "aws":
            return [self.py, "-m", "awscli", "--endpoint-url", self.srv.endpoint, "s3", "cp",
                    *(["--recursive"] if recursive else []), "--only-show-errors", src, dst]
        raise ValueError(tool)

    def run(self, tool, src, dst, recursive=True):
        """(wall seconds, CPU seconds, peak RSS in MiB) of one command: the process's own
        rusage (os.wait4), its children's not counted (cloud-files forks none by default)."""
        c = self.cmd(tool, src, dst, recursive)
        t0 = time.perf_counter()
        with tempfile.TemporaryFile("w+") as err:
            p = subprocess.Popen(c, env=self.env, stdout=subprocess.DEVNULL, stderr=err, text=True)
            _pid, status, usage = os.wait4(p.pid, 0)
            dt = time.perf_counter() - t0
            p.returncode = os.waitstatus_to_exitcode(status)
            if p.returncode != 0:
                err.seek(0)
                raise RuntimeError(f"{tool}: {' '.join(c)} -> {p.returncode}\n" + "\n".join(ln for ln in err.read().splitlines() if "connectionpools" not in ln and "pool'" not in ln and "Exception ignored" not in ln)[-3000:])
        return dt, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def server_ceiling(srv, key, size, parallel, part=16 * MiB):
    """Seconds for curl (C, SigV4 signed by curl itself) to read an object as ranges of
    ``part`` bytes, ``parallel`` at once, into /dev/null: the server's pace with no client
    work and no local file, the floor of any download of it here."""
    spans = "\n".join(f"{a}-{min(a + part, size) - 1}" for a in range(0, size, part))
    t0 = time.perf_counter()
    subprocess.run(["xargs", "-P", str(parallel), "-I{}", "curl", "-s", "-f", "--aws-sigv4",
                    f"aws:amz:{srv.region}:s3", "--user",
                    f"{srv.access_key_id}:{srv.secret_access_key}", "-r", "{}",
                    f"{srv.endpoint}/{srv.bucket}/{key}", "-o", "/dev/null"],
                   input=spans, text=True, check=True)
    return time.perf_counter() - t0


def count_remote(srv, prefix):
    client = srv.client()
    n = total = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=srv.bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            n += 1
            total += o["Size"]
    return n, total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=10_000)
    ap.add_argument("--size-kib", type=int, default=64)
    ap.add_argument("--big-mib", type=int, default=1024)
    ap.add_argument("--quick", action="store_true", help="1,000 objects, a 128 MiB file")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--tools", default="cloudfiles_store,cloud-files,aws")
    ap.add_argument("--workloads", default="small,big")
    ap.add_argument("--ceiling", action="store_true",
                    help="also time curl reading the big file's ranges into /dev/null, each run")
    args = ap.parse_args()
    if args.quick:
        args.objects, args.big_mib = 1000, 128
    tools = args.tools.split(",")
    from seaweedfs import SeaweedFSServer

    work = tempfile.mkdtemp(prefix="cfs-cli-bench-")
    results = []  # (workload, direction, tool, seconds, objects, bytes)
    try:
        with SeaweedFSServer() as srv:
            t = Tools(srv, work)
            if "cloud-files" in tools and not t.cloudfiles:
                sys.exit("cloudfiles (cloud-files' CLI) not found: pip install cloud-files into benchmarks/.venv")
            wl = []
            if "small" in args.workloads:
                tree = os.path.join(work, "tree")
                make_tree(tree, args.objects, args.size_kib * KiB)
                wl.append(("small", tree, True))
            if "big" in args.workloads:
                bigdir = os.path.join(work, "bigdir")
                os.makedirs(bigdir)
                make_big(os.path.join(bigdir, "big.bin"), args.big_mib * MiB)
                wl.append(("big", bigdir, True))
            for name, local, rec in wl:
                n_want, bytes_want = tree_stats(local)
                log(f"{name}: {n_want} files, {bytes_want / MiB:.0f} MiB")
                for run in range(args.runs):
                    for tool in tools:
                        prefix = f"{name}-{tool}-{run}"
                        up = t.run(tool, local + "/", t.s3(tool, prefix), rec)
                        got = count_remote(srv, prefix)
                        assert got == (n_want, bytes_want), (tool, "up", got)
                        down_dir = os.path.join(work, f"down-{prefix}")
                        down = t.run(tool, t.s3(tool, prefix), down_dir, rec)
                        got = tree_stats(down_dir)
                        assert got == (n_want, bytes_want), (tool, "down", got)
                        shutil.rmtree(down_dir)
                        if args.ceiling and name == "big" and tool == tools[0]:
                            secs = server_ceiling(srv, f"{prefix}/big.bin", bytes_want, 8)
                            log(f"  run {run + 1} curl ranges to /dev/null  {secs:7.2f} s  "
                                f"{bytes_want / MiB / secs:8.1f} MiB/s")
                        for direction, (secs, cpu, rss) in (("up", up), ("down", down)):
                            results.append((name, direction, tool, secs, n_want, bytes_want, cpu, rss))
                            log(f"  run {run + 1} {tool:17s} {direction:4s} {secs:7.2f} s  "
                                f"{n_want / secs:9.0f} obj/s  {bytes_want / MiB / secs:8.1f} MiB/s  "
                                f"CPU {cpu:6.2f} s  peak RSS {rss:6.0f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, tools)


def report(results, tools):
    # best (shortest) of the runs per (workload, direction, tool)
    best = {}
    for name, d, tool, secs, n, b, cpu, rss in results:
        k = (name, d, tool)
        if k not in best or secs < best[k][0]:
            best[k] = (secs, n, b, cpu, rss)
    log("\n| workload | direction | tool | wall s | objects/s | MB/s | CPU s | peak RSS MiB "
        "| ours vs the faster peer |")
    log("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (name, d) in sorted({(k[0], k[1]) for k in best}):
        peers = [best[(name, d, t)][0] for t in tools if t != "cloudfiles_store" and (name, d, t) in best]
        ours = best.get((name, d, "cloudfiles_store"))
        for tool in tools:
            if (name, d, tool) not in best:
                continue
            secs, n, b, cpu, rss = best[(name, d, tool)]
            ratio = f"{min(peers) / ours[0]:.2f}x" if tool == "cloudfiles_store" and peers and ours else ""
            log(f"| {name} | {d} | {tool} | {secs:.2f} | {n / secs:,.0f} | {b / 1e6 / secs:,.0f} "
                f"| {cpu:.2f} | {rss:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
