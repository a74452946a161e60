"""cloudfiles-store: the store's operations on whole trees, from the shell.

    cloudfiles-store ls URL [PREFIX]         names one level below PREFIX (-r: every key)
    cloudfiles-store cat URL KEY             an object's bytes to stdout
    cloudfiles-store put URL KEY [FILE]      FILE (or stdin) into KEY
    cloudfiles-store cp SRC DST              every key of SRC to DST, in parallel
    cloudfiles-store rm URL [PREFIX]         every key below PREFIX (or KEY with --key)
    cloudfiles-store du URL [PREFIX]         bytes and objects below PREFIX

URLs are anything CloudFilesStore takes (s3://, gs://, http(s)://, file://, paths, mem://).
Transfer options: --concurrency N, --retries N, and -o NAME=VALUE for any store option.
"""

from __future__ import annotations

import argparse
import sys

from . import CloudFilesStore
from .errors import CloudFilesError


def _options(args) -> dict:
    opts = {}
    for item in args.option or ():
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"cloudfiles-store: -o takes NAME=VALUE, not {item!r}")
        opts[name] = value
    if args.concurrency is not None:
        opts["concurrency"] = args.concurrency
    if args.retries is not None:
        opts["retries"] = args.retries
    return opts


def _entries_below(store: CloudFilesStore, prefix: str) -> list[tuple[str, int]]:
    """(key, size) of every key in the directory PREFIX, or of the key PREFIX itself."""
    if not prefix:
        return store.entries()
    below = store.entries(prefix.rstrip("/") + "/")
    if below or prefix.endswith("/"):
        return below
    return [(prefix, store.getsize(prefix))] if prefix in store else []


def _keys_below(store: CloudFilesStore, prefix: str) -> list[str]:
    return [key for key, _ in _entries_below(store, prefix)]


def cmd_ls(args, store):
    if args.recursive:
        names = _keys_below(store, args.prefix)
    else:
        names = store.listdir(args.prefix)
    for name in names:
        print(name)


def cmd_cat(args, store):
    sys.stdout.buffer.write(store[args.key])
    sys.stdout.buffer.flush()


def cmd_put(args, store):
    if args.file in (None, "-"):
        data = sys.stdin.buffer.read()
    else:
        with open(args.file, "rb") as f:
            data = f.read()
    store[args.key] = data


def cmd_cp(args, store):
    dst = CloudFilesStore(args.dst, **_options(args))
    keys = _keys_below(store, "")
    # streamed: iter_get's window feeds setitems' window, memory stays bounded
    dst.setitems((k, v) for k, v in store.iter_get(keys) if v is not None)
    print(f"copied {len(keys)} objects", file=sys.stderr)


def cmd_rm(args, store):
    if args.key:
        del store[args.prefix]
        return
    keys = _keys_below(store, args.prefix)
    store.delitems(keys)
    print(f"removed {len(keys)} objects", file=sys.stderr)


def cmd_du(args, store):
    entries = _entries_below(store, args.prefix)
    print(f"{sum(max(size, 0) for _, size in entries)} bytes in {len(entries)} objects")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="cloudfiles-store", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--concurrency", type=int)
    ap.add_argument("--retries", type=int)
    ap.add_argument("-o", "--option", action="append", metavar="NAME=VALUE")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ls")
    p.add_argument("url")
    p.add_argument("prefix", nargs="?", default="")
    p.add_argument("-r", "--recursive", action="store_true")
    p.set_defaults(run=cmd_ls)

    p = sub.add_parser("cat")
    p.add_argument("url")
    p.add_argument("key")
    p.set_defaults(run=cmd_cat)

    p = sub.add_parser("put")
    p.add_argument("url")
    p.add_argument("key")
    p.add_argument("file", nargs="?")
    p.set_defaults(run=cmd_put)

    p = sub.add_parser("cp")
    p.add_argument("url", metavar="src")
    p.add_argument("dst")
    p.set_defaults(run=cmd_cp)

    p = sub.add_parser("rm")
    p.add_argument("url")
    p.add_argument("prefix", nargs="?", default="")
    p.add_argument("--key", action="store_true", help="remove exactly this key")
    p.set_defaults(run=cmd_rm)

    p = sub.add_parser("du")
    p.add_argument("url")
    p.add_argument("prefix", nargs="?", default="")
    p.set_defaults(run=cmd_du)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with CloudFilesStore(args.url, **_options(args)) as store:
            args.run(args, store)
    except KeyError as e:
        print(f"cloudfiles-store: no such key: {e.args[0]}", file=sys.stderr)
        return 1
    except CloudFilesError as e:
        print(f"cloudfiles-store: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # the transfers that could be were given up before this was raised
        print("cloudfiles-store: interrupted", file=sys.stderr)
        return 130  # 128 + SIGINT, as shells report it
    return 0


if __name__ == "__main__":
    sys.exit(main())
