"""Turn a results document (benchmarks/results/*.json) into markdown tables and PNG plots.

    python3 benchmarks/report.py RESULTS.json [MORE.json ...] [--out OUT.md] [--plots DIR]   # re-render, merge
"""
import json
import os
import statistics

OURS = "cloudfiles_store"
LIMIT = "wrk"
ORDER = [LIMIT, OURS, "cloudfiles_store_h2", "urllib3_threads", "fsspec_http", "obstore", "cloud-files", "tensorstore", "s3fs", "zarr_memorystore"]


def _med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _ops(r):
    return r["objects"] / r["wall_s"] if r.get("wall_s") else None


def aggregate(doc):
    """{(workload, conc): {client: stats}} with medians over rounds and per-round ratios for ours."""
    groups = {}
    for r in doc["results"]:
        groups.setdefault((r["workload"], r["concurrency"]), {}).setdefault(r["client"], []).append(r)
    out = {}
    for key, by_client in groups.items():
        stats = {}
        for c, rs in by_client.items():
            if all(r.get("na") for r in rs):
                stats[c] = {"na": rs[0]["na"]}
                continue
            rs = [r for r in rs if not r.get("na")]
            ok = [r for r in rs if not r.get("fatal")]
            st = {"runs": len(rs), "failed": len(rs) - len(ok),
                  "fatal": next((r["fatal"] for r in rs if r.get("fatal")), None)}
            if ok:
                ops = [_ops(r) for r in ok]
                mbs = [r["bytes"] / r["wall_s"] / 1e6 for r in ok]
                st.update(
                    ops=_med(ops), ops_min=min(ops), ops_max=max(ops),
                    mbs=_med(mbs), mbs_min=min(mbs), mbs_max=max(mbs),
                    cpu_per_1k=_med([1000 * r["cpu_s"] / max(1, r["requests"]) for r in ok]),
                    cpu_per_gb=_med([r["cpu_s"] / (r["bytes"] / 1e9) if r["bytes"] else None for r in ok]),
                    rss_mib=_med([r["maxrss_kib"] / 1024 for r in ok]),
                    p50_ms=_med([r.get("p50_ms") for r in ok]),
                    p99_ms=_med([r.get("p99_ms") for r in ok]),
                    errors=sum(r.get("errors", 0) for r in ok),
                    first_error=next((r["first_error"] for r in ok if r.get("first_error")), None),
                    checksum=("n/a" if all(r.get("checksum_ok") is None for r in ok)
                              else "ok" if all(r.get("checksum_ok") for r in ok) else "MISMATCH"),
                )
            stats[c] = st
        # per-round ratios of ours to the best peer and to wrk (same round = same conditions)
        rounds = {}
        for c, rs in by_client.items():
            for r in rs:
                if not r.get("fatal") and not r.get("errors") and not r.get("na"):
                    rounds.setdefault(r["round"], {})[c] = _ops(r)
        rp, rw, best_names = [], [], []
        for rnd, vals in rounds.items():
            if OURS not in vals:
                continue
            peers = {c: v for c, v in vals.items() if c not in (OURS, LIMIT, "cloudfiles_store_h2", "zarr_memorystore")}
            if peers:
                name = max(peers, key=peers.get)
                best_names.append(name)
                rp.append(vals[OURS] / peers[name])
            if LIMIT in vals:
                rw.append(vals[OURS] / vals[LIMIT])
        peer_stats = {c: s for c, s in stats.items() if c not in (OURS, LIMIT) and s.get("ops")}
        best_peer = max(peer_stats, key=lambda c: peer_stats[c]["ops"]) if peer_stats else None
        out[key] = {"clients": stats, "ratio_best_peer": _med(rp), "ratio_wrk": _med(rw),
                    "ratio_best_peer_range": (min(rp), max(rp)) if rp else None,
                    "ratio_wrk_range": (min(rw), max(rw)) if rw else None,
                    "best_peer": best_peer}
    return out


def _f(x, nd=0):
    if x is None:
        return "–"
    return f"{x:,.{nd}f}"


def _sorted_clients(names):
    return sorted(names, key=lambda c: ORDER.index(c) if c in ORDER else 99)


def plots(doc, agg, plot_dir):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return [], f"no plots: matplotlib not importable ({e})"
    os.makedirs(plot_dir, exist_ok=True)
    files = []
    workloads = list(doc["workloads"])
    concs = sorted(doc["concurrency"])
    clients = _sorted_clients({c for (w, k), a in agg.items() for c in a["clients"]})
    colors = {c: f"C{i}" for i, c in enumerate(ORDER)}
    for w in workloads:
        concs = sorted({k for (ww, k) in agg if ww == w})
        big = (doc["workloads"][w].get("object_size") or 0) >= 2**20
        cpu_metric = ("cpu_per_gb", "client CPU s per GB") if big else ("cpu_per_1k", "client CPU s per 1,000 requests")
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
        for metric, ax, label in (("mbs", axes[0], "MB/s (median, bar = min..max)"),
                                  (cpu_metric[0], axes[1], cpu_metric[1])):
            width = 0.8 / max(1, len(clients))
            for i, c in enumerate(clients):
                xs, ys, lo, hi = [], [], [], []
                for j, k in enumerate(concs):
                    st = agg.get((w, k), {}).get("clients", {}).get(c)
                    if not st or st.get(metric) is None:
                        continue
                    xs.append(j + (i - (len(clients) - 1) / 2) * width)
                    ys.append(st[metric])
                    if metric == "mbs":
                        lo.append(st[metric] - st["mbs_min"])
                        hi.append(st["mbs_max"] - st[metric])
                if not xs:
                    continue
                kw = {"yerr": [lo, hi], "capsize": 2} if metric == "mbs" else {}
                ax.bar(xs, ys, width, label=c, color=colors.get(c), edgecolor="black" if c == OURS else None,
                       linewidth=1.5 if c == OURS else 0, **kw)
            ax.set_xticks(range(len(concs)))
            ax.set_xticklabels([f"concurrency {k}" for k in concs])
            ax.set_ylabel(label)
            ax.grid(axis="y", alpha=0.3)
        fig.suptitle(doc["workloads"][w]["desc"], fontsize=11)
        axes[0].set_title("throughput (higher is better)", fontsize=10)
        axes[1].set_title("client CPU cost (lower is better)", fontsize=10)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.07, 1, 0.95))
        p = os.path.join(plot_dir, f"{w}.png")
        fig.savefig(p, dpi=90)
        plt.close(fig)
        files.append((w, p))
    return files, None


def markdown(doc, agg, plot_files, plot_note, md_path):
    m = doc["machine"]
    L = []
    L.append("# Benchmarks" + (" (quick smoke run)" if doc.get("quick") else ""))
    L.append("")
    L.append("Generated by `benchmarks/run.py`; every client in the same run against the same loopback "
             "nginx and the same objects, each measurement in a fresh process, rounds interleaved.")
    L.append("")
    if doc.get("commands"):
        L.append("- Commands: " + "; ".join(f"`{c}`" for c in doc["commands"])
                 + (f"; merged by `{doc['merge_command']}`" if doc.get("merge_command") else ""))
    else:
        L.append(f"- Command: `{doc['command']}`")
    L.append(f"- Machine: {m['nproc']} cores ({m['cpu']}), {m.get('mem_mib') or '?'} MiB RAM, Linux "
             f"{m['kernel']}, Python {m['python']}, {m['nginx']}, {m['curl']}. **Shared machine**: other "
             f"people's builds ran at the same time (load average {', '.join(f'{x:.1f}' for x in m['loadavg_start'])} "
             f"at start, {', '.join(f'{x:.1f}' for x in m.get('loadavg_end', m['loadavg_start']))} at end); nginx, "
             "the client and those builds share 2 cores, so absolute figures swing by 2x or more between rounds: "
             "read the ratios, which compare clients within the same round.")
    t = m.get("tree") or {}
    if t:
        L.append(f"- Measured build: commit {t.get('commit', '?')}"
                 + (" with uncommitted changes in csrc/" if t.get("csrc_dirty") else "")
                 + (f", extension built {t['core_built']}" if t.get("core_built") else "") + ".")
    L.append(f"- Rounds: {doc['runs']} (median reported, min..max shown); "
             f"concurrency: {', '.join(map(str, doc['concurrency']))}; "
             f"elapsed {doc.get('elapsed_s', 0) / 60:.1f} min.")
    vs = doc.get("versions", {})
    if vs:
        L.append("- Versions: " + "; ".join(f"{c} {vs[c]}" for c in _sorted_clients(vs)))
    if doc.get("skipped"):
        L.append("- Not run here: " + "; ".join(f"**{c}**: {why}" for c, why in doc["skipped"].items()))
    L.append("")
    # headline
    L.append("## Summary: cloudfiles_store against the best peer and wrk")
    L.append("")
    L.append("Ratios are medians of per-round ratios of objects/s (same round, same conditions). "
             "\"Best peer\" is the fastest other Python client in that round (the urllib3 thread pool counts).")
    L.append("")
    L.append("| workload | conc. | cloudfiles_store obj/s | MB/s | best peer | peer obj/s | x best peer | wrk obj/s | x wrk "
             "| CPU s/1k req (ours / lowest other) | peak RSS MiB (ours / lowest other) |")
    L.append("|---|---:|---:|---:|---|---:|---:|---:|---:|---|---|")
    for (w, k) in sorted(agg, key=lambda t: (list(doc["workloads"]).index(t[0]), t[1])):
        a = agg[(w, k)]
        cl = a["clients"]
        o = cl.get(OURS, {})
        bp = a["best_peer"]
        wr = cl.get(LIMIT, {})
        others = {c: s["cpu_per_1k"] for c, s in cl.items() if c not in (OURS, LIMIT) and s.get("cpu_per_1k")}
        low = min(others, key=others.get) if others else None
        cpu = (f"{_f(o.get('cpu_per_1k'), 3)} / {_f(others[low], 3)} ({low})" if low else _f(o.get("cpu_per_1k"), 3))
        rss_o = {c: s["rss_mib"] for c, s in cl.items() if c not in (OURS, LIMIT) and s.get("rss_mib")}
        rlow = min(rss_o, key=rss_o.get) if rss_o else None
        rss = (f"{_f(o.get('rss_mib'))} / {_f(rss_o[rlow])} ({rlow})" if rlow else _f(o.get("rss_mib")))
        rp = a["ratio_best_peer"]
        rw = a["ratio_wrk"]
        L.append(
            f"| {doc['workloads'][w]['desc']} | {k} | {_f(o.get('ops'))} | {_f(o.get('mbs'))} | {bp or '–'} | "
            f"{_f(cl[bp]['ops']) if bp else '–'} | {_f(rp, 2) + 'x' if rp else '–'} | {_f(wr.get('ops'))} | "
            f"{_f(100 * rw, 0) + '%' if rw else '–'} | {cpu} | {rss} |")
    L.append("")
    notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "NOTES.md")
    if os.path.exists(notes) and not doc.get("quick"):
        with open(notes) as f:
            L.append(f.read().rstrip())
        L.append("")
    # per workload tables
    plots_by_w = dict(plot_files)
    for w, wd in doc["workloads"].items():
        L.append(f"## {wd['desc']}")
        L.append("")
        if w in plots_by_w:
            rel = os.path.relpath(plots_by_w[w], os.path.dirname(os.path.abspath(md_path)))
            L.append(f"![{w}]({rel})")
            L.append("")
        for k in sorted(doc["concurrency"]):
            a = agg.get((w, k))
            if not a:
                continue
            L.append(f"Concurrency {k}:")
            L.append("")
            L.append("| client | obj/s (min..max) | MB/s | CPU s/1k req | CPU s/GB | peak RSS MiB | p50 ms | p99 ms | errors | checksum |")
            L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
            for c in _sorted_clients(a["clients"]):
                s = a["clients"][c]
                name = f"**{c}**" if c == OURS else c
                if s.get("na"):
                    L.append(f"| {name} | n/a: {s['na']} | | | | | | | | |")
                    continue
                if s.get("ops") is None:
                    L.append(f"| {name} | failed: {str(s.get('fatal'))[:150].replace('|', '/')} | | | | | | | | |")
                    continue
                err = str(s["errors"]) + (f" ({s['first_error'][:80]})".replace("|", "/") if s.get("first_error") else "")
                ck = s["checksum"] if c != LIMIT else "n/a (wrk drops bodies)"
                L.append(f"| {name} | {_f(s['ops'])} ({_f(s['ops_min'])}..{_f(s['ops_max'])}) | {_f(s['mbs'])} | "
                         f"{_f(s['cpu_per_1k'], 3)} | {_f(s['cpu_per_gb'], 2)} | {_f(s['rss_mib'])} | {_f(s['p50_ms'], 2)} | {_f(s['p99_ms'], 2)} | "
                         f"{err} | {ck} |")
            L.append("")
    L.append("## How it is measured")
    L.append("")
    L.append(
        "- **Server**: Debian nginx on 127.0.0.1 (2 workers, sendfile, keep-alive, access log off), started by the benchmark from `tests/servers/nginx.py`; objects are plain files "
        "(random bytes) written once under `benchmarks/.data` and reused.\n"
        "- **wrk** (the physical limit): `wrk -t2 -cC` with a Lua script cycling over the same paths (or Range "
        "headers), fixed duration; its connections are capped at the number of objects in one pass (the other "
        "clients cannot have more in flight). Its CPU and RSS come from `wait4()`; MB/s counts payload bytes.\n"
        "- **Python clients** each run in a fresh process: import and client construction, an untimed warm-up "
        "(min(2C, n/2) objects; 1 for 64 MiB), then the timed pass(es). CPU = `getrusage(RUSAGE_SELF)` user+sys "
        "over the timed passes (all threads, including native I/O threads); peak RSS = `VmHWM` of the "
        "process (includes holding one pass's results, as every client returns them all).\n"
        "- **urllib3_threads**: `ThreadPoolExecutor(C)` + one `urllib3.PoolManager(maxsize=C, block=True)`.\n"
        "- **fsspec_http**: `HTTPFileSystem.cat(urls, batch_size=C)` / `cat_ranges`, aiohttp connector limit C.\n"
        "- **obstore**: `HTTPStore`, `get_async` / `get_range_async` per item under `asyncio.Semaphore(C)`.\n"
        "- **S3 GET row**: the same nginx and objects through the S3 protocol (path-style, SigV4-signed with a "
        "dummy key that nginx ignores): `CloudFilesStore('s3://bucket/o64k', endpoint_url=...)`, s3fs "
        "`S3FileSystem(endpoint_url=..., config_kwargs={'max_pool_connections': C}).cat(paths, batch_size=C)`, "
        "obstore `S3Store`, TensorStore's s3 kvstore (`s3_request_concurrency` C).\n"
        "- **cloud-files**: `CloudFiles(url, num_threads=C, green=False).get(paths, raw=True)`.\n"
        "- **tensorstore**: http kvstore with `http_request_concurrency` limit C, all reads issued at once.\n"
        "- **cloudfiles_store**: `CloudFilesStore(url, concurrency=C).getitems(keys)` / `get_ranges`.\n"
        "- **PUT**: the same bytes as the 64 KiB GET set, to a fresh directory per measurement (nginx dav, "
        "`create_full_put_path`); afterwards the benchmark reads the files nginx wrote and checks their checksum. "
        "wrk PUTs 16 distinct bodies cycled over the same paths.\n"
        "- **Streaming**: `CloudFilesStore.iter_get(keys)` against a urllib3 thread pool keeping 2C requests in "
        "flight and handing results over as they complete; each body is checksummed and dropped inside the timed "
        "loop (same cost for both). The point is peak RSS.\n"
        "- **zarr 3**: `zarr.config` `async.concurrency` = C for every store; `ZarrStore(url, concurrency=C)`, "
        "`FsspecStore.from_url` (aiohttp connector limit C), `ObjectStore(HTTPStore)`, and TensorStore's own "
        "`zarr3` driver over its http kvstore. Read = `arr[...]` of the whole array; write = `create_array` + "
        "`arr[...] = data` into a fresh directory, then the chunk files on disk are checksummed. Chunks are "
        "uncompressed so that codec CPU (the same for all) does not hide the stores.\n"
        "- **Listing**: `CloudFilesStore.listdir()` against urllib3 GET + `json.loads` of nginx's "
        "`autoindex_format json` page; wrk GETs the same index page (one connection). objects/s = names/s.\n"
        "- **Checksum**: sum over objects of crc32(body seeded with crc32(key)) mod 2^64, compared with the "
        "value recorded when the data was written; latency p50/p99 only where the client exposes per-request "
        "timing without changing how it is driven.")
    if plot_note:
        L.append(f"- {plot_note}")
    L.append("")
    with open(md_path, "w") as f:
        f.write("\n".join(L))


def merge(docs):
    """One document from several runs (e.g. a concurrency sweep of the small GETs and a
    single-concurrency run of the rest): results side by side, every command kept. Where two
    documents measured the same workload at the same concurrency, the first one's rounds count."""
    if len(docs) == 1:
        return docs[0]
    out = dict(docs[0])
    out["commands"] = [d["command"] for d in docs]
    out["command"] = " ; ".join(out["commands"])
    out["workloads"], out["results"], out["skipped"], out["versions"] = {}, [], {}, {}
    conc = set()
    taken = set()
    for d in docs:
        for w, wd in d["workloads"].items():
            out["workloads"].setdefault(w, wd)
            # a (workload, concurrency) measured in two documents: the first document's rounds only
            mine = {(r["workload"], r["concurrency"]) for r in d["results"] if r["workload"] == w}
            out["results"] += [r for r in d["results"] if r["workload"] == w
                               and (r["workload"], r["concurrency"]) not in taken]
            taken |= mine
        out["skipped"].update(d.get("skipped", {}))
        out["versions"].update(d.get("versions", {}))
        conc.update(d["concurrency"])
    out["concurrency"] = sorted(conc)
    out["runs"] = max(d["runs"] for d in docs)
    out["elapsed_s"] = sum(d.get("elapsed_s", 0) for d in docs)
    m = dict(out["machine"])
    m["loadavg_end"] = docs[-1]["machine"].get("loadavg_end", m["loadavg_start"])
    trees = [d["machine"].get("tree") for d in docs if d["machine"].get("tree")]
    if trees:  # several runs: name every build measured (runs before this was recorded say nothing)
        m["tree"] = {"commit": ", ".join(dict.fromkeys(t.get("commit", "?") for t in trees)),
                     "csrc_dirty": any(t.get("csrc_dirty") for t in trees),
                     "core_built": ", ".join(dict.fromkeys(t["core_built"] for t in trees if t.get("core_built")))}
    out["machine"] = m
    return out


def write(doc, md_path, plot_dir):
    agg = aggregate(doc)
    files, note = plots(doc, agg, plot_dir)
    markdown(doc, agg, files, note, md_path)
    return agg


if __name__ == "__main__":
    import argparse
    import importlib.util
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    venv_python = os.path.join(here, ".venv", "bin", "python")
    if importlib.util.find_spec("matplotlib") is None and os.path.exists(venv_python) \
            and os.path.realpath(sys.prefix) != os.path.realpath(os.path.join(here, ".venv")):
        # the plots need matplotlib, which run.py installs into benchmarks/.venv only
        os.execv(venv_python, [venv_python, os.path.abspath(__file__), *sys.argv[1:]])
    ap = argparse.ArgumentParser(description="re-render results JSON into markdown + plots")
    ap.add_argument("results", nargs="+", help="results JSON files (several: merged, first wins per workload)")
    ap.add_argument("--merge", action="store_true", help="(documentation only: several files are always merged)")
    ap.add_argument("--out", default=os.path.join(here, "results", "report.md"))
    ap.add_argument("--plots", default=os.path.join(here, "results", "plots"))
    a = ap.parse_args()
    docs = []
    for p in a.results:
        with open(p) as f:
            docs.append(json.load(f))
    doc = merge(docs)
    if len(docs) > 1:
        rel = lambda p: os.path.relpath(os.path.abspath(p), os.path.dirname(here))  # noqa: E731
        doc["merge_command"] = ("python3 benchmarks/report.py " + " ".join(rel(p) for p in a.results)
                                + f" --out {rel(a.out)} --plots {rel(a.plots)}")
    write(doc, a.out, a.plots)
    print(a.out)
