"""The physical limit: Debian's `wrk` against the same nginx, objects and connection count.

A Lua script cycles over the same object paths (or byte ranges) as the Python clients,
each wrk thread starting at its own offset; requests are pre-formatted once per thread so
the Lua cost per request is a table lookup. wrk runs for a fixed duration (it has no
"N requests" mode); its done() hook prints one JSON line with the counts and latency
percentiles. CPU and peak RSS of the wrk process come from wait4().
"""
import json
import os
import shutil
import subprocess
import time

from worker import proc_status_kib

LUA = r"""
local paths_file = %(paths)s
local nthreads = %(threads)d
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  reqs = {}
  paths = {}
  bodies = {}
  local cache = {}
  local n = 0
  for line in io.lines(paths_file) do
    -- path TAB range-header TAB body-file (PUT when a body file is given)
    local p, r, b = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    n = n + 1
    if b ~= "" then
      if cache[b] == nil then
        local f = assert(io.open(b, "rb"))
        cache[b] = f:read("*a")
        f:close()
      end
      paths[n] = p
      bodies[n] = cache[b]
    elseif r ~= "" then
      reqs[n] = wrk.format("GET", p, {["Range"] = r})
    else
      reqs[n] = wrk.format("GET", p)
    end
  end
  nreq = n
  idx = math.floor((id or 0) * n / nthreads)
end

function request()
  idx = idx %% nreq + 1
  local b = bodies[idx]
  if b ~= nil then
    return wrk.format("PUT", paths[idx], nil, b)
  end
  return reqs[idx]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "bytes": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, ' ..
    '"write": %%d, "status": %%d, "timeout": %%d, "p50_us": %%d, "p99_us": %%d, "mean_us": %%f}\n',
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def available():
    return shutil.which("wrk")


def version():
    try:
        p = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
        return (p.stdout + p.stderr).strip().splitlines()[0].split(" Copyright")[0].replace("wrk ", "", 1)
    except Exception as e:  # noqa: BLE001
        return f"unknown ({e})"


def run(workdir, base_url, paths, conc, duration_s, payload_bytes_per_req, threads=2, timeout_s=120):
    """paths: URL paths, or tuples (path, 'bytes=a-b' or '', body file for a PUT or '').

    Returns a result dict like worker.run."""
    os.makedirs(workdir, exist_ok=True)
    paths_file = os.path.join(workdir, "paths.txt")
    with open(paths_file, "w") as f:
        for p in paths:
            p = p if isinstance(p, tuple) else (p,)
            p = tuple(p) + ("",) * (3 - len(p))
            f.write("\t".join(p) + "\n")
    script = os.path.join(workdir, "cycle.lua")
    threads = max(1, min(threads, conc))
    with open(script, "w") as f:
        f.write(LUA % {"paths": json.dumps(paths_file), "threads": threads})
    cmd = ["wrk", f"-t{threads}", f"-c{conc}", f"-d{max(1, int(round(duration_s)))}s", "--timeout", "60s", "-s", script,
           base_url if "://" in base_url else f"http://{base_url}"]
    out_path = os.path.join(workdir, "wrk.out")
    with open(out_path, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = t0 + duration_s + timeout_s
        hwm = None
        while True:
            # peak RSS: VmHWM polled while wrk runs (ru_maxrss would carry our own peak, see
            # worker.proc_status_kib); wrk allocates at start, so the last reading is its peak
            h = proc_status_kib("VmHWM", proc.pid)
            hwm = h if h is not None else hwm
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, ru = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
    with open(out_path) as f:
        text = f.read()
    res = {"client": "wrk", "version": version(), "cmd": " ".join(cmd)}
    line = next((ln for ln in text.splitlines() if ln.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        res["fatal"] = f"wrk exited {proc.returncode}: {text[-1500:]}"
        return res
    w = json.loads(line[len("WRKJSON "):])
    errs = w["connect"] + w["read"] + w["write"] + w["status"] + w["timeout"]
    res.update(
        wall_s=w["duration_us"] / 1e6,
        cpu_s=ru.ru_utime + ru.ru_stime,
        objects=w["requests"],
        requests=w["requests"],
        bytes=w["requests"] * payload_bytes_per_req,
        wire_bytes=w["bytes"],
        errors=errs,
        first_error=None if not errs else f"wrk errors: {w}",
        checksums=[],
        maxrss_kib=hwm or ru.ru_maxrss,
        p50_ms=w["p50_us"] / 1000.0,
        p99_ms=w["p99_us"] / 1000.0,
        raw=w,
    )
    return res
