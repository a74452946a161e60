"""S3 multipart uploads: parts one at a time against parts in parallel (the store's
multipart_concurrency option), to SeaweedFS's S3 gateway on 127.0.0.1 (signatures checked).

    python3 benchmarks/multipart.py [--size-mib 256] [--part-mib 16] [--parallel 1,4,8] [--rounds 3]

Every upload is one `store[key] = body` of --size-mib random bytes in parts of --part-mib;
the rounds alternate the settings so machine-load drift hits each alike. Prints MB/s per
round and the median per setting, and checks each object read back by its MD5.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from seaweedfs import SeaweedFSServer  # noqa: E402

import cloudfiles_store  # noqa: E402

MiB = 1024 * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--part-mib", type=int, default=16)
    ap.add_argument("--parallel", default="1,4,8")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    settings = [int(x) for x in args.parallel.split(",")]
    body = os.urandom(args.size_mib * MiB)
    want = hashlib.md5(body).hexdigest()
    rates = {p: [] for p in settings}
    with SeaweedFSServer() as srv:
        for r in range(args.rounds):
            for p in settings[r % len(settings):] + settings[:r % len(settings)]:
                s = cloudfiles_store.CloudFilesStore(
                    srv.url("bench"), **srv.store_options(
                        multipart_threshold=args.part_mib * MiB, multipart_chunksize=args.part_mib * MiB,
                        multipart_concurrency=p))
                key = f"r{r}-p{p}"
                t = time.perf_counter()
                s[key] = body
                dt = time.perf_counter() - t
                assert hashlib.md5(s[key]).hexdigest() == want, "read back differs"
                del s[key]
                rates[p].append(len(body) / dt / 1e6)
                print(f"round {r}: {p} part(s) at once: {rates[p][-1]:,.0f} MB/s", flush=True)
    print(f"\n{args.size_mib} MiB in {args.part_mib} MiB parts to SeaweedFS (median of {args.rounds}):")
    for p in settings:
        print(f"  multipart_concurrency={p}: {statistics.median(rates[p]):,.0f} MB/s "
              f"(spread {min(rates[p]):,.0f}-{max(rates[p]):,.0f})")


if __name__ == "__main__":
    main()
