"""cloudfiles-store: copy, list and delete objects in any store, from the shell.

    cloudfiles-store ls [-r] [-l] [-h] URL             names below URL (-r: every key)
    cloudfiles-store du [-s] [-h] URL                  bytes and objects, per child or in sum
    cloudfiles-store cat [--range A-B] URL             an object's bytes to stdout
    cloudfiles-store head [-c N] [--meta] URL          its first N bytes (or its size)
    cloudfiles-store cp [-r] SRC... DST                files, objects, trees; '-' is stdin/stdout
    cloudfiles-store mv [-r] SRC... DST                cp, then delete the sources copied
    cloudfiles-store rm [-r] [--force] [--dry-run] URL...
    cloudfiles-store touch URL                         an empty object, if there is none
    cloudfiles-store verify LOCAL URL                  local files against the objects, by content
    cloudfiles-store sync [--delete] [-c] SRC DST      copy what is missing or differs in size
                                                       (-c: or in content)
    cloudfiles-store put URL KEY [FILE]                (older form of cp FILE URL/KEY)

URLs: s3://bucket/key, gs://bucket/key, http(s)://host/path, file:///path or a plain path.
A command's URL may also be given as URL KEY (two words). Source keys take gsutil
wildcards: * (within a path segment), ** (across segments), ?, [...].
mem:// is refused: a memory store lives in one process and would vanish at exit.

Global options go anywhere on the line: -o KEY=VAL (a store option, to every store the
command opens), --src-opt/--dst-opt KEY=VAL (one side of cp/mv/sync/verify only),
--profile NAME (store options from [profile.NAME] of $CLOUDFILES_STORE_CONFIG or
~/.config/cloudfiles-store/config.toml; --src-profile/--dst-profile for one side; the
command line's options override it), --concurrency N, --retries N, -q/--quiet, --json
(one JSON object a line), --debug (tracebacks), --version. cp, mv, sync and put take
--compress gzip|br|zstd|none and --compress-level N for what they write. Exit status:
0 done, 1 failed (one line per failure), 2 usage or config file, 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import re
import stat
import sys
import tomllib

from . import CloudFilesStore
from .errors import BatchError, BucketNotFoundError, CloudFilesError, OptionError

PROG = "cloudfiles-store"


class Usage(Exception):
    """A command line that cannot be run as written: exit status 2."""


class Failure(Exception):
    """The command ran and failed: exit status 1 (the message is one line)."""


# --------------------------------------------------------------------------- locations

@dataclasses.dataclass
class Loc:
    text: str          # as the user wrote it
    base: str = ""     # the store URL (bucket, host or file:///)
    path: str = ""     # key or prefix inside base; '' is the whole bucket/root
    stdio: bool = False
    local: bool = False

    @property
    def dirlike(self):
        return self.path == "" or self.path.endswith("/")

    def url(self, key):
        """The URL of KEY in this location's store, for messages."""
        if self.local:
            return "/" + key
        return f"{self.base.rstrip('/')}/{key}"


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_WILD = re.compile(r"[*?\[]")


def parse_loc(text: str, key: str | None = None) -> Loc:
    if key:
        text = text.rstrip("/") + "/" + key.lstrip("/")
    if text == "-":
        return Loc(text, stdio=True)
    m = _SCHEME.match(text)
    scheme = m.group(1).lower() if m else "file"
    if scheme == "mem":
        raise Usage(f"{text}: mem:// stores live inside one process and vanish when it "
                    "exits; the command line cannot use them")
    if scheme == "file" or not m:
        path = text[len("file://"):] if m else text
        absolute = os.path.abspath(os.path.expanduser(path))
        if path.endswith("/") and absolute != "/":
            absolute += "/"
        return Loc(text, "file:///", absolute.lstrip("/"), local=True)
    if scheme in ("s3", "gs", "http", "https"):
        host, _, path = text[m.end():].partition("/")
        return Loc(text, f"{scheme}://{host}", path)
    return Loc(text, text, "")  # the store will name the scheme it does not know


def _join(*parts) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def glob_regex(pattern: str) -> re.Pattern:
    """gsutil wildcards: ** any characters, * and ? within a segment, [...] a class."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 2)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


# --------------------------------------------------------------------------- context

class Ctx:
    def __init__(self, args):
        self.args = args
        self.stores = {}
        self.failed = 0
        self.dropped = {}
        self.json = getattr(args, "json", False)
        self.quiet = getattr(args, "quiet", False) or self.json
        self.config = None  # the config file's profiles, read when a profile is named

    def profile_name(self, side=None) -> str | None:
        """The profile for SIDE: --src-profile/--dst-profile, else --profile."""
        a = self.args
        own = {"src": a.src_profile, "dst": a.dst_profile}.get(side)
        return own or a.profile

    def profile(self, side=None) -> dict:
        name = self.profile_name(side)
        if not name:
            return {}
        if self.config is None:
            self.config = Config.load(config_path())
        return self.config.profile(name, self)

    def options(self, side=None) -> dict:
        """The store options for SIDE: the profile's, then -o, then --src-opt/--dst-opt,
        then --concurrency and --retries (each overriding what comes before)."""
        a = self.args
        opts = dict(self.profile(side))
        items = list(a.option)
        if side == "src":
            items += a.src_opt
        elif side == "dst":
            items += a.dst_opt
        for item in items:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise Usage(f"store options are KEY=VALUE, not {item!r}")
            opts[name] = value
        if a.concurrency is not None:
            opts["concurrency"] = a.concurrency
        if a.retries is not None:
            opts["retries"] = a.retries
        return opts

    def store(self, loc: Loc, side=None) -> CloudFilesStore:
        opts = self.options(side)
        ident = (loc.base, tuple(sorted(opts.items())))
        if ident not in self.stores:
            try:
                self.stores[ident] = self._open(loc, opts, side)
            except OptionError as e:
                raise self._from_profile(e, side) from None
        return self.stores[ident]

    def _open(self, loc, opts, side):
        """Open a store; on the two sides of a copy, an option of -o or of --profile the
        backend does not know is left out for that side (open_sides checks some side
        took it): a profile for S3 still applies to the S3 side of a copy from a file."""
        shared = {item.partition("=")[0] for item in self.args.option}
        if side is not None and not {"src": self.args.src_profile,
                                     "dst": self.args.dst_profile}.get(side):
            shared |= set(self.profile(None))
        while True:
            try:
                return CloudFilesStore(loc.base, **opts)
            except OptionError as e:
                m = re.match(r"unknown option (\S+) for", str(e))
                if side is None or not m or m.group(1) not in shared or m.group(1) not in opts:
                    raise
                del opts[m.group(1)]
                self.dropped.setdefault(m.group(1), []).append((e, side))

    def _from_profile(self, exc, side):
        """An unknown option that came from a profile (not overridden on the command line)
        is the config file's mistake: a usage error naming the profile and the file."""
        m = re.match(r"unknown option (\S+) for (.*)", str(exc))
        name = self.profile_name(side)
        explicit = {item.partition("=")[0] for item in self.args.option
                    + {"src": self.args.src_opt, "dst": self.args.dst_opt}.get(side, [])}
        if not name:
            return exc
        if m:
            if m.group(1) in self.profile(side) and m.group(1) not in explicit:
                return Usage(f"profile {name!r} in {self.config.path}: unknown option "
                             f"{m.group(1)} for {m.group(2)}")
            return exc  # the command line's own
        # another option error (a bad value, options that go together): say which profile
        # took part; the store's message never holds a secret's value
        return Failure(f"{exc} (with profile {name!r} of {self.config.path})")

    def open_sides(self, srcs, dst):
        """Open every store of a two-sided command up front; an -o option that no side
        takes is an error, as it is for one store."""
        opened = 0
        for loc, side in [(s, "src") for s in srcs] + [(dst, "dst")]:
            if not loc.stdio:
                self.store(loc, side)
                opened += 1
        for name, errs in self.dropped.items():
            if len(errs) >= opened:
                raise self._from_profile(*errs[0])

    def close(self):
        for s in self.stores.values():
            try:
                s.close()
            except Exception:
                pass

    def out(self, text, **record):
        if self.json:
            print(json.dumps(record), flush=True)
        else:
            print(text, flush=True)

    def note(self, text):
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def error(self, exc_or_text, **record):
        self.failed += 1
        text = str(exc_or_text)
        if self.json:
            e = exc_or_text
            rec = {"error": text, **record}
            if isinstance(e, CloudFilesError):
                rec.update(key=e.key, url=e.url, status=e.status)
            print(json.dumps(rec, default=str), file=sys.stderr, flush=True)
        else:
            print(f"{PROG}: {text}", file=sys.stderr, flush=True)

    def batch_errors(self, exc: BatchError):
        """One line per failed key; a missing bucket once, not once per key."""
        errs = exc.errors or [exc]
        missing = [e for e in errs if isinstance(e, BucketNotFoundError)]
        if missing and len(missing) == len(errs):
            self.error(missing[0])
            self.failed += len(errs) - 1
            return
        for e in errs:
            self.error(e)

    def warn(self, text):
        """A warning: on stderr even with --quiet (as ssh warns of a readable key)."""
        if self.json:
            print(json.dumps({"warning": text}), file=sys.stderr, flush=True)
        else:
            print(f"{PROG}: warning: {text}", file=sys.stderr, flush=True)

    def progress(self, what, total_objects, total_bytes=None, watch=()):
        """A progress bar; WATCH: stores whose uploads in progress move it by bytes."""
        from ._progress import Progress
        bar = Progress(what, total_objects, total_bytes,
                       enabled=not self.quiet and sys.stderr.isatty())
        return bar.watch(*watch)

    def write_coding(self, side="dst") -> dict:
        """setitems()/put() keywords for the encoding of what this command writes, or {}
        (keep each object's as it is): --compress and --compress-level, else the
        destination's compress and compress_level options (-o, --dst-opt, a profile)."""
        a = self.args
        if getattr(a, "compress", None) is not None:
            codec, level = a.compress, a.compress_level
        else:
            opts = self.options(side)
            codec, level = opts.get("compress"), opts.get("compress_level")
            if codec in (None, False, "", "none", "None", "false", "False"):
                if getattr(a, "compress_level", None) is not None:
                    raise Usage("--compress-level needs --compress gzip, br or zstd")
                return {}
            if getattr(a, "compress_level", None) is not None:
                level = a.compress_level
        if codec == "none":
            if level is not None:
                raise Usage("--compress-level needs --compress gzip, br or zstd")
            return {"compress": False}
        out = {"compress": "gzip" if codec in (True, "true", "True") else codec}
        if level is not None:
            try:
                out["level"] = int(level)
            except ValueError:
                raise Usage(f"a compression level is a whole number, not {level!r}") from None
        return out


# --------------------------------------------------------------------------- profiles

# Options whose values are credentials (the backends' secret_options): never printed, and
# a config file holding them should be readable by its owner only.
SECRET_OPTIONS = frozenset({"secret_access_key", "session_token", "credential_token", "token",
                            "bearer_token", "password"})


def config_path() -> str:
    """$CLOUDFILES_STORE_CONFIG, else $XDG_CONFIG_HOME (~/.config) /cloudfiles-store/config.toml."""
    given = os.environ.get("CLOUDFILES_STORE_CONFIG")
    if given:
        return os.path.expanduser(given)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "cloudfiles-store", "config.toml")


class Config:
    """The profiles of a TOML config file: [profile.NAME] tables of store options."""

    def __init__(self, path, profiles, mode):
        self.path = path
        self.profiles = profiles
        self.mode = mode          # permission bits of the file
        self.warned = False

    @classmethod
    def load(cls, path):
        try:
            with open(path, "rb") as f:
                mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
                data = tomllib.load(f)
        except FileNotFoundError:
            raise Usage(f"{path}: no such config file, where profiles are read from "
                        "($CLOUDFILES_STORE_CONFIG names another)") from None
        except tomllib.TOMLDecodeError as e:
            # tomllib's message names the line and column, not the text there (a secret)
            raise Usage(f"{path}: not valid TOML: {e}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise Usage(f"{path}: cannot read the config file: "
                        f"{getattr(e, 'strerror', None) or type(e).__name__}") from None
        profiles = data.get("profile", {})
        if not isinstance(profiles, dict):
            raise Usage(f"{path}: 'profile' must be a table of [profile.NAME] tables")
        return cls(path, profiles, mode)

    def profile(self, name, ctx) -> dict:
        table = self.profiles.get(name)
        if table is None:
            known = ", ".join(sorted(self.profiles)) or "none"
            raise Usage(f"{self.path}: no profile {name!r} (profiles there: {known})")
        if not isinstance(table, dict):
            raise Usage(f"{self.path}: profile.{name} must be a table of store options")
        for key, value in table.items():
            if not isinstance(value, (str, int, float, bool)):
                # the value itself is never shown: it may be a secret
                raise Usage(f"{self.path}: [profile.{name}] {key}: a store option is a "
                            f"string, number or boolean, not a {type(value).__name__}")
        secrets = sorted(SECRET_OPTIONS & set(table))
        if secrets and self.mode & 0o077 and not self.warned:
            # ssh refuses such a key file; a config file may be shared on purpose: warn
            self.warned = True
            ctx.warn(f"{self.path} holds secrets ({', '.join(secrets)} in profile {name!r}) "
                     f"and others can read it (mode {self.mode:04o}); chmod 600 {self.path}")
        return dict(table)


# --------------------------------------------------------------------------- listing

@dataclasses.dataclass
class Item:
    key: str        # key in the source store
    size: int
    rel: str        # name relative to the source location (for the destination key)


def expand(ctx: Ctx, loc: Loc, store, recursive: bool, what="cp") -> tuple[list[Item], bool]:
    """The objects LOC names, and whether it named a tree (prefix/directory) with -r."""
    path = loc.path
    m = _WILD.search(path)
    if m:
        listed = path[:m.start()].rpartition("/")[0]
        listed = listed + "/" if listed else ""
        rx = glob_regex(path)
        items = []
        for key, size in store.entries(listed):
            if rx.fullmatch(key):
                items.append(Item(key, size, key[len(listed):]))
            elif recursive:
                for i, c in enumerate(key):
                    if c == "/" and i > len(listed) and rx.fullmatch(key[:i]):
                        items.append(Item(key, size, key[len(listed):]))
                        break
        if not items:
            raise Failure(f"{loc.text}: no objects matched")
        return items, False
    if path and not path.endswith("/") and path in store:
        return [Item(path, store.getsize(path), path.rpartition("/")[2])], False
    prefix = _prefix(path)
    below = store.entries(prefix)
    if not below:
        if loc.local:
            raise Failure(f"{loc.text}: no such file or directory")
        raise Failure(f"{loc.text}: no such object or prefix")
    if not recursive:
        raise Failure(f"{loc.text}: is a {'directory' if loc.local else 'prefix'} "
                      f"of {len(below)} objects; {what} needs -r for it")
    return [Item(k, s, k[len(prefix):]) for k, s in below], True


def _filtered(args, items):
    inc = [glob_regex(p) for p in getattr(args, "include", None) or ()]
    exc = [glob_regex(p) for p in getattr(args, "exclude", None) or ()]

    def hit(rxs, rel):
        return any(r.fullmatch(rel) or r.fullmatch(rel.rpartition("/")[2]) for r in rxs)
    return [it for it in items
            if (not inc or hit(inc, it.rel)) and not hit(exc, it.rel)]


def _is_dir(ctx, loc, store) -> bool:
    if loc.dirlike:
        return True
    if loc.local:
        return os.path.isdir("/" + loc.path)
    return bool(store.listdir(loc.path))


# --------------------------------------------------------------------------- transfers

@dataclasses.dataclass
class Job:
    src: Loc
    key: str
    size: int
    dkey: str


def run_jobs(ctx: Ctx, jobs: list[Job], dst: Loc, verb="copied") -> set[str]:
    """Copy every job; report failures one a line; return the source keys copied (by URL)."""
    dstore = ctx.store(dst, "dst")
    done = set()
    total_bytes = sum(max(j.size, 0) for j in jobs) if all(j.size >= 0 for j in jobs) else None
    groups = {}
    for j in jobs:
        groups.setdefault(j.src.base, []).append(j)
    coding = ctx.write_coding()
    with ctx.progress(verb, len(jobs), total_bytes, watch=[dstore]) as bar:
        for base, group in groups.items():
            sstore = ctx.store(group[0].src, "src")
            if _write_attrs(ctx.args) or coding:
                # attributes or an encoding asked for: each object read decoded and written
                # with them (a copy keeps the source's; transfer_to's reencode takes no level)
                _stream_copy(ctx, sstore, dstore, group, bar, done, coding)
            else:
                _transfer(ctx, sstore, dstore, group, bar, done)
    if ctx.json:
        for j in jobs:
            if j.src.url(j.key) in done:
                ctx.out("", op=verb, src=j.src.url(j.key), dst=dst.url(j.dkey), size=j.size)
    return done


def _transfer(ctx, sstore, dstore, group, bar, done):
    """The store's transfer path: on the server where the two stores allow it (same
    service, endpoint and credentials), else streamed in a bounded window."""
    failed = set()
    try:
        sstore.transfer_to(dstore, keys=[(j.key, j.dkey, j.size) for j in group],
                           progress=bar.update)
    except BatchError as e:
        failed = set(getattr(e, "failed", ()))
        src = group[0].src
        gone = [err for err in e.errors if isinstance(err, KeyError)]
        for err in gone:
            ctx.error(f"{src.url(err.args[0])}: no such object (gone since it was listed)")
        rest = [err for err in e.errors if not isinstance(err, KeyError)]
        if rest or not gone:
            ctx.batch_errors(BatchError(str(e), errors=rest))
    for j in group:
        if j.key not in failed:
            done.add(j.src.url(j.key))


def _stream_copy(ctx, sstore, dstore, group, bar, done, coding=None):
    by_key = {}
    for j in group:
        by_key.setdefault(j.key, []).append(j)
    read = {}
    unread = []

    def feed():
        # the window of iter_get feeds the window of setitems: memory stays bounded
        try:
            for key, value in sstore.iter_get(list(by_key)):
                if value is None:
                    for j in by_key[key]:
                        unread.append(f"{j.src.url(key)}: no such object "
                                      "(gone since it was listed)")
                    continue
                for j in by_key[key]:
                    read[j.dkey] = j
                    bar.update(1, len(value))
                    yield j.dkey, value
        except BatchError as e:
            unread.append(e)
        except CloudFilesError as e:
            unread.append(e)

    failed_dst = set()
    try:
        dstore.setitems(feed(), **_write_attrs(ctx.args), **(coding or {}))
    except ValueError as e:
        _bad_level(e, coding)
    except BatchError as e:
        ctx.batch_errors(e)
        failed_dst = {err.key for err in e.errors}
    for u in unread:
        if isinstance(u, BatchError):
            ctx.batch_errors(u)
        else:
            ctx.error(u)
    for dkey, j in read.items():
        if dkey not in failed_dst:
            done.add(j.src.url(j.key))


def plan_copy(ctx, args, srcs: list[Loc], dst: Loc) -> list[Job]:
    dstore = ctx.store(dst, "dst")
    multi = len(srcs) > 1 or any(_WILD.search(s.path) for s in srcs)
    dst_dir = multi or _is_dir(ctx, dst, dstore)
    jobs, seen = [], set()
    for src in srcs:
        items, tree = expand(ctx, src, ctx.store(src, "src"), args.recursive, args.command)
        items = _filtered(args, items)
        name = src.path.rstrip("/").rpartition("/")[2]
        for it in items:
            if tree:
                # POSIX cp -r: into an existing directory, under the source's own name
                dkey = _join(dst.path, name, it.rel) if dst_dir and not src.path.endswith("/") \
                    else _join(dst.path, it.rel)
            elif dst_dir:
                dkey = _join(dst.path, it.rel)
            else:
                dkey = dst.path
            if not dkey:
                raise Usage(f"{dst.text}: names no object to write {src.text} to")
            if src.base == dst.base and it.key == dkey and \
                    ctx.options("src") == ctx.options("dst"):
                # a copy onto itself; for mv it would end in a delete of the only copy
                raise Failure(f"{src.url(it.key)} and {dst.url(dkey)} are the same object")
            if (src.base, it.key, dkey) in seen:
                continue
            seen.add((src.base, it.key, dkey))
            jobs.append(Job(src, it.key, it.size, dkey))
    if not jobs:
        raise Failure("no objects matched " + " ".join(s.text for s in srcs))
    return jobs


# --------------------------------------------------------------------------- commands

def _loc(args, name="url"):
    return parse_loc(getattr(args, name), getattr(args, "key", None))


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _size(args, n):
    return _human(n) if args.human else str(n)


def _prefix(path: str) -> str:
    return path.rstrip("/") + "/" if path.rstrip("/") else ""


def _listing(ctx, loc, store, recursive=True, details=False):
    """(prefix, [(key, size)]) for LOC: a pattern's matches, the one object it names, or
    every key below its prefix (names print relative to the prefix). With details (and
    recursive), [(key, size, mtime, etag)]: Unix seconds and ETag, None where unknown."""
    path = loc.path
    wild = _WILD.search(path)
    if wild:
        items, _ = expand(ctx, loc, store, recursive=True)
        rows = [(i.key, i.size) for i in items]
        if details:
            known = {k: (m, e) for k, _, m, e in store.entries(path[:wild.start()], details=True)}
            rows = [(k, n, *known.get(k, (None, None))) for k, n in rows]
        return _prefix(path[:wild.start()].rpartition("/")[0]), rows
    if path and not path.endswith("/") and path in store:
        if details:
            info = store.head(path)
            when = info.last_modified.timestamp() if info.last_modified else None
            return _prefix(path.rpartition("/")[0]), [(path, info.size, when, info.etag)]
        return _prefix(path.rpartition("/")[0]), [(path, store.getsize(path))]
    prefix = _prefix(path)
    if recursive:
        entries = store.entries(prefix, details=True) if details else store.entries(prefix)
    else:
        entries = [(n, None) for n in store.listdir(prefix)]
    if not entries and prefix and (recursive or not store.entries(prefix)):
        raise Failure(f"{loc.text}: no such object or prefix")
    return (prefix, entries) if recursive else ("", entries)


def _when(mtime) -> str:
    """Unix seconds as ISO 8601 UTC to the second (gsutil ls -l's form), '-' if unknown."""
    if mtime is None:
        return "-"
    return datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _children(prefix, entries) -> dict:
    """{name one level below prefix ('dir/' for a prefix): (bytes, objects)}"""
    out = {}
    for key, size, *_ in entries:
        head, slash, _ = key[len(prefix):].partition("/")
        b, n = out.get(head + slash, (0, 0))
        out[head + slash] = (b + max(size, 0), n + 1)
    return out


def cmd_ls(ctx, args):
    loc = _loc(args)
    store = ctx.store(loc)
    prefix, entries = _listing(ctx, loc, store, args.recursive or args.long
                               or bool(_WILD.search(loc.path)), details=args.long)
    if args.recursive or not args.long:
        rows = [(k[len(prefix):], s, *rest) for k, s, *rest in entries]
    else:
        # one level: objects with their time and ETag, prefixes with the bytes below them
        direct = {k[len(prefix):]: rest for k, _, *rest in entries if "/" not in k[len(prefix):]}
        rows = [(name, b, *direct.get(name, ())) for name, (b, _) in sorted(_children(prefix, entries).items())]
    for name, size, *rest in rows:
        if args.long and size is not None:
            if name.endswith("/") and not args.recursive:
                ctx.out(f"{_size(args, size):>12}  {name}", key=name, size=size)
                continue
            mtime, etag = rest if rest else (None, None)
            ctx.out(f"{_size(args, size):>12}  {_when(mtime):20}  {etag or '-'}  {name}", key=name,
                    size=size, last_modified=None if mtime is None else _when(mtime), etag=etag)
        else:
            ctx.out(name, key=name, size=size)


def cmd_du(ctx, args):
    loc = _loc(args)
    prefix, entries = _listing(ctx, loc, ctx.store(loc))
    if not args.summarize:
        for name, (b, n) in sorted(_children(prefix, entries).items()):
            ctx.out(f"{_size(args, b):>12}  {name}", name=name, bytes=b, objects=n)
    total = sum(max(s, 0) for _, s in entries)
    ctx.out(f"{_size(args, total)} bytes in {len(entries)} objects"
            if not args.human else f"{_human(total)} in {len(entries)} objects",
            url=loc.text, bytes=total, objects=len(entries))


def _read(ctx, loc, store, key=None):
    key = key or loc.path
    try:
        return store[key]
    except KeyError:
        raise Failure(f"{loc.url(key) if not loc.local else '/' + key}: no such "
                      f"{'file' if loc.local else 'object'}") from None


def _write_stdout(data):
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def cmd_cat(ctx, args):
    loc = _loc(args)
    store = ctx.store(loc)
    if not args.range:
        return _write_stdout(_read(ctx, loc, store))
    m = re.fullmatch(r"(\d*)-(\d*)", args.range)
    if not m or not (m.group(1) or m.group(2)):
        raise Usage(f"--range takes A-B (bytes A to B, inclusive), A- or -N, not {args.range!r}")
    a, b = m.groups()
    if not loc.path or loc.path not in store:
        _read(ctx, loc, store)  # raises the one-line error
    if not a:
        data = store.get_range(loc.path, -int(b))
    else:
        data = store.get_range(loc.path, int(a), int(b) + 1 if b else None)
    _write_stdout(data)


def cmd_head(ctx, args):
    loc = _loc(args)
    store = ctx.store(loc)
    if args.meta:
        try:
            info = store.head(loc.path) if loc.path else None
        except KeyError:
            info = None
        if info is None:
            _read(ctx, loc, store)  # raises the one-line error
        d = info.to_dict()
        lines = [f"{name}: {value}" for name, value in d.items()
                 if value is not None and name != "metadata"]
        lines += [f"metadata.{k}: {v}" for k, v in sorted(info.metadata.items())]
        return ctx.out("\n".join(lines), url=loc.url(loc.path), **d)
    if not loc.path or loc.path not in store:
        _read(ctx, loc, store)
    _write_stdout(store.get_range(loc.path, 0, args.bytes))


def _many_locs(args) -> list[Loc]:
    """rm/touch take URLs; the older two-word form URL KEY (a scheme, then a bare key) too."""
    words = args.url
    if (len(words) == 2 and _SCHEME.match(words[0]) and not _SCHEME.match(words[1])
            and not words[1].startswith(("/", ".", "~"))):
        return [parse_loc(words[0], words[1])]
    return [parse_loc(w) for w in words]


def cmd_touch(ctx, args):
    for loc in _many_locs(args):
        text = loc.text
        if loc.dirlike:
            raise Usage(f"{text}: names a prefix, not an object")
        store = ctx.store(loc)
        if loc.path not in store:  # an existing object keeps its bytes
            store[loc.path] = b""


def cmd_put(ctx, args):
    dst = parse_loc(args.url, args.key)
    ctx.open_sides([parse_loc(args.file)] if args.file not in (None, "-") else [], dst)
    if args.file in (None, "-"):
        _put(ctx, dst, sys.stdin.buffer.read(), args)
        return
    src = parse_loc(args.file)
    value = _local_value(ctx, src, ctx.store(src, "src"))
    try:
        _put(ctx, dst, value, args)
    finally:
        if not isinstance(value, bytes):
            value.close()


def _local_value(ctx, loc, store):
    """A local file as a put's value: the open file (the engine sends it from there, never
    holding it whole), or its decoded bytes where the name found an encoded variant (NAME.gz
    for NAME, as a read of NAME does)."""
    try:
        file, encoding = store._open_stored(loc.path)
    except KeyError:
        return _read(ctx, loc, store)  # the error that names it
    if encoding is None:
        return file
    file.close()
    return _read(ctx, loc, store)


def _put(ctx, dst, value, args):
    """One object written whole (value: bytes, or a binary file sent from where it is), with
    the attributes and encoding asked for; a progress bar (by the parts its upload has
    stored) when it is large enough to have parts."""
    store = ctx.store(dst, "dst")
    coding = ctx.write_coding()
    size = len(value) if isinstance(value, bytes) else os.fstat(value.fileno()).st_size
    with ctx.progress("uploaded", 1, size, watch=[store]) as bar:
        try:
            store.put(dst.path, value, **_write_attrs(args), **coding)
        except ValueError as e:
            _bad_level(e, coding)
        bar.update(1, size)


def _bad_level(exc, coding):
    """A level the codec does not have is a usage error (the store checks it before any
    write); any other ValueError goes on."""
    if coding and coding.get("level") is not None and "level" in str(exc):
        raise Usage(str(exc)) from None
    raise exc


def _write_attrs(args) -> dict:
    """put()'s keyword arguments from --content-type, --cache-control,
    --content-disposition, --storage-class and --metadata KEY=VAL."""
    out = {}
    for name in ("content_type", "cache_control", "content_disposition", "storage_class"):
        if getattr(args, name, None) is not None:
            out[name] = getattr(args, name)
    meta = {}
    for kv in getattr(args, "metadata", None) or ():
        k, eq, v = kv.partition("=")
        if not eq or not k:
            raise Usage(f"--metadata takes KEY=VAL, not {kv!r}")
        meta[k] = v
    if meta:
        out["metadata"] = meta
    return out


def cmd_cp(ctx, args, move=False):
    srcs = [parse_loc(s) for s in args.src]
    dst = parse_loc(args.dst)
    ctx.open_sides([s for s in srcs if not s.stdio], dst)
    if any(s.stdio for s in srcs):
        if len(srcs) > 1 or move:
            raise Usage("'-' (stdin) must be the only source, and cannot be moved")
        if dst.stdio or dst.dirlike:
            raise Usage(f"{dst.text}: stdin needs an object to go to")
        _put(ctx, dst, sys.stdin.buffer.read(), args)
        return
    if dst.stdio:
        for src in srcs:
            store = ctx.store(src, "src")
            items, _ = expand(ctx, src, store, args.recursive, "cp")
            for it in _filtered(args, items):
                _write_stdout(_read(ctx, src, store, it.key))
        return
    jobs = plan_copy(ctx, args, srcs, dst)
    verb = "moved" if move else "copied"
    if args.dry_run:
        for j in jobs:
            ctx.out(f"would copy {j.src.url(j.key)} -> {dst.url(j.dkey)}",
                    op="would-" + verb, src=j.src.url(j.key), dst=dst.url(j.dkey))
        return
    done = run_jobs(ctx, jobs, dst, verb)
    if move:
        by_store = {}
        for j in jobs:
            if j.src.url(j.key) in done:
                by_store.setdefault(j.src.base, (j.src, set()))[1].add(j.key)
        for src, keys in by_store.values():
            try:
                ctx.store(src, "src").delitems(sorted(keys))
            except BatchError as e:
                ctx.batch_errors(e)
    ctx.note(f"{verb} {len(done)} of {len(jobs)} objects" if len(done) != len(jobs)
             else f"{verb} {len(done)} objects")


def cmd_rm(ctx, args):
    plan = []
    for loc in _many_locs(args):
        text = loc.text
        store = ctx.store(loc)
        wild = _WILD.search(loc.path)
        at_root = "/" not in loc.path[:wild.start()] if wild else not loc.path.strip("/")
        if at_root and loc.local:
            # like POSIX rm's --preserve-root: never a walk of the whole filesystem
            raise Failure(f"{text}: refusing to delete at the root of the filesystem")
        if at_root and not wild and not (args.recursive and args.force):
            raise Failure(f"{text}: refusing to delete every object in the whole "
                          "bucket/root; rm -r --force does that")
        items, _ = expand(ctx, loc, store, args.recursive, "rm")
        items = _filtered(args, items)
        if at_root and wild and not args.force and len(items) == len(store.entries("")):
            raise Failure(f"{text}: matches every object in the bucket/root; "
                          "add --force to delete them all")
        plan.append((loc, store, [it.key for it in items]))
    if args.dry_run:
        for loc, _, keys in plan:
            for k in keys:
                ctx.out(f"would remove {loc.url(k)}", op="would-remove", url=loc.url(k))
        return
    total = sum(len(k) for _, _, k in plan)
    removed = 0
    with ctx.progress("removed", total) as bar:
        for loc, store, keys in plan:
            step = max(256, (ctx.args.concurrency or 64) * 4)
            for i in range(0, len(keys), step):
                chunk = keys[i:i + step]
                failed = set()
                try:
                    store.delitems(chunk)
                except BatchError as e:
                    ctx.batch_errors(e)
                    failed = {err.key for err in e.errors}
                removed += len(chunk) - len(failed)
                bar.update(len(chunk))
                for k in chunk:
                    if k not in failed and ctx.json:
                        ctx.out("", op="removed", url=loc.url(k))
    ctx.note(f"removed {removed} objects" if removed == total
             else f"removed {removed} of {total} objects")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cmd_verify(ctx, args):
    local, remote = parse_loc(args.local), parse_loc(args.remote)
    ctx.open_sides([local], remote)
    lstore, rstore = ctx.store(local, "src"), ctx.store(remote, "dst")
    items, tree = expand(ctx, local, lstore, recursive=True)
    if tree or _is_dir(ctx, remote, rstore):
        pairs = {_join(remote.path, it.rel): it for it in items}
    else:
        pairs = {remote.path: items[0]}
    listed = dict(rstore.entries(_common_prefix(list(pairs))))
    bad = 0
    same_size = []
    for key, it in pairs.items():
        rsize = listed.get(key)
        if rsize is None:
            bad += 1
            ctx.out(f"missing  {remote.url(key)}", status="missing", url=remote.url(key))
        elif rsize >= 0 and rsize != it.size:
            bad += 1
            ctx.out(f"size     {remote.url(key)} ({it.size} local, {rsize} remote)",
                    status="size", url=remote.url(key), local_size=it.size, remote_size=rsize)
        else:
            same_size.append((key, it))
    for key in _content_differs(ctx, lstore, rstore,
                                [(it.key, k, it.size) for k, it in same_size]):
        bad += 1
        ctx.out(f"content  {remote.url(key)}", status="content", url=remote.url(key))
    ctx.note(f"verified {len(pairs)} objects: {len(pairs) - bad} match, {bad} differ")
    if bad:
        raise Failure(f"{bad} of {len(pairs)} objects differ from {local.text}")


def _content_differs(ctx, sstore, dstore, pairs) -> list[str]:
    """The destination keys of PAIRS [(source key, destination key, size)] whose bytes
    differ: each side read in parallel, only a SHA-256 of each object kept."""
    digest = {}
    differ = []
    with ctx.progress("compared", len(pairs), sum(max(n, 0) for _, _, n in pairs)) as bar:
        for key, v in sstore.iter_get([s for s, _, _ in pairs]):
            digest[key] = _digest(v) if v is not None else None
        source_of = {d: s for s, d, _ in pairs}
        for key, v in dstore.iter_get(list(source_of)):
            bar.update(1, len(v or b""))
            if v is None or _digest(v) != digest.get(source_of[key]):
                differ.append(key)
    return sorted(differ)


def _common_prefix(keys):
    p = os.path.commonprefix(keys) if keys else ""
    return p.rpartition("/")[0] + "/" if "/" in p else ""


def cmd_sync(ctx, args):
    src, dst = parse_loc(args.src), parse_loc(args.dst)
    ctx.open_sides([src], dst)
    sstore, dstore = ctx.store(src, "src"), ctx.store(dst, "dst")
    items, tree = expand(ctx, src, sstore, recursive=True, what="sync")
    items = _filtered(args, items)
    if tree:
        there = dict(dstore.entries(_prefix(dst.path)))
    else:
        there = {dst.path: dstore.getsize(dst.path)} if dst.path in dstore else {}
    jobs, same = [], []
    for it in items:
        dkey = _join(dst.path, it.rel) if tree else dst.path
        if there.get(dkey) != it.size or it.size < 0:
            jobs.append(Job(src, it.key, it.size, dkey))
        elif args.checksum:
            same.append((it.key, dkey, it.size))
    if same:
        differ = set(_content_differs(ctx, sstore, dstore, same))
        jobs += [Job(src, k, n, d) for k, d, n in same if d in differ]
    wanted = {_join(dst.path, it.rel) for it in items}
    extra = sorted(k for k in there if k not in wanted) if args.delete else []
    if args.dry_run:
        for j in jobs:
            ctx.out(f"would copy {src.url(j.key)} -> {dst.url(j.dkey)}", op="would-copy",
                    src=src.url(j.key), dst=dst.url(j.dkey))
        for k in extra:
            ctx.out(f"would remove {dst.url(k)}", op="would-remove", url=dst.url(k))
        return
    done = run_jobs(ctx, jobs, dst) if jobs else set()
    if extra:
        try:
            dstore.delitems(extra)
        except BatchError as e:
            ctx.batch_errors(e)
    ctx.note(f"synced: {len(done)} copied, {len(extra)} removed, "
             f"{len(items) - len(jobs)} already there")


# --------------------------------------------------------------------------- parsing

def _version() -> str:
    from ._version import __version__  # the one place the version is written
    return __version__


_VALUE_OPTS = {"-o", "--option", "--src-opt", "--dst-opt", "--concurrency", "--retries",
               "--profile", "--src-profile", "--dst-profile", "--compress", "--compress-level"}


def _add_globals(p):
    g = p.add_argument_group("global options (anywhere on the line)")
    g.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VAL",
                   help="a store option, for every store the command opens")
    g.add_argument("--src-opt", action="append", default=[], metavar="KEY=VAL",
                   help="a store option for the source side only")
    g.add_argument("--dst-opt", action="append", default=[], metavar="KEY=VAL",
                   help="a store option for the destination side only")
    g.add_argument("--profile", metavar="NAME",
                   help="store options from [profile.NAME] of the config file, for every store")
    g.add_argument("--src-profile", metavar="NAME", help="... for the source side only")
    g.add_argument("--dst-profile", metavar="NAME", help="... for the destination side only")
    g.add_argument("--concurrency", type=int, help="requests in flight per store")
    g.add_argument("--retries", type=int, help="attempts per request, retries included")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress, no summary")
    g.add_argument("--json", action="store_true", help="one JSON object a line")
    g.add_argument("--debug", action="store_true", help="tracebacks for errors")
    g.add_argument("--version", action="version", version=f"{PROG} {_version()}")


def _url_key(p, many=False):
    p.add_argument("url", nargs="+" if many else None)
    if not many:
        p.add_argument("key", nargs="?", help="a key below URL (URL/KEY in one word works too)")


def _filters(p):
    p.add_argument("--include", action="append", metavar="PATTERN",
                   help="only names matching (wildcards; repeatable)")
    p.add_argument("--exclude", action="append", metavar="PATTERN",
                   help="skip names matching (wildcards; repeatable)")


def _compress_options(p):
    g = p.add_argument_group("encoding of the objects written")
    g.add_argument("--compress", choices=["gzip", "br", "zstd", "none"],
                   help="store the objects encoded so (Content-Encoding; on file:// as K.gz, "
                        "K.br, K.zstd), or plain; a copy re-encodes, never on the server")
    g.add_argument("--compress-level", type=int, metavar="N",
                   help="the codec's level (gzip 0-12, br 0-11, zstd up to 22)")


def _attr_options(p):
    g = p.add_argument_group("what the objects written carry besides their bytes "
                             "(S3, GCS; HTTP: the content type)")
    g.add_argument("--content-type", metavar="TYPE",
                   help="default: guessed from each key's extension")
    g.add_argument("--cache-control", metavar="VALUE")
    g.add_argument("--content-disposition", metavar="VALUE")
    g.add_argument("--storage-class", metavar="CLASS", help="STANDARD_IA, NEARLINE, ...")
    g.add_argument("--metadata", action="append", metavar="KEY=VAL",
                   help="user metadata (repeatable)")


def _command_parsers():
    cmds = {}

    def new(name, run, help, human=False):
        p = argparse.ArgumentParser(prog=f"{PROG} {name}", description=help,
                                    add_help=not human)
        if human:
            p.add_argument("--help", action="help", help="show this help and exit")
            p.add_argument("-h", "--human-readable", dest="human", action="store_true",
                           help="sizes in KiB, MiB, GiB")
        p.set_defaults(run=run, command=name)
        cmds[name] = (p, help)
        return p

    p = new("ls", cmd_ls, "list the names below URL", human=True)
    _url_key(p)
    p.add_argument("-r", "--recursive", action="store_true", help="every key below URL")
    p.add_argument("-l", "--long", action="store_true",
                   help="with sizes, last-modified times (UTC) and ETags")

    p = new("du", cmd_du, "bytes and objects below URL, per child", human=True)
    _url_key(p)
    p.add_argument("-s", "--summarize", action="store_true", help="only the total")

    p = new("cat", cmd_cat, "an object's bytes to stdout")
    _url_key(p)
    p.add_argument("--range", metavar="A-B", help="bytes A to B inclusive (A- or -N too)")

    p = new("head", cmd_head, "an object's first bytes, or its metadata")
    _url_key(p)
    p.add_argument("-c", "--bytes", type=int, default=1024, metavar="N",
                   help="how many bytes (default 1024)")
    p.add_argument("--meta", action="store_true",
                   help="the object's metadata instead: size, ETag, last-modified, content type, "
                        "encoding, storage class, user metadata (HEAD)")

    for name, run, help in (("cp", cmd_cp, "copy files and objects"),
                            ("mv", lambda c, a: cmd_cp(c, a, move=True),
                             "copy, then delete the sources copied")):
        p = new(name, run, help)
        p.add_argument("src", nargs="+")
        p.add_argument("dst")
        p.add_argument("-r", "-R", "--recursive", action="store_true",
                       help="prefixes and directories, everything below them")
        p.add_argument("-n", "--dry-run", action="store_true", help="say what would be copied")
        _filters(p)
        _attr_options(p)
        _compress_options(p)

    p = new("rm", cmd_rm, "delete objects")
    _url_key(p, many=True)
    p.add_argument("-r", "-R", "--recursive", action="store_true",
                   help="delete every object below a prefix")
    p.add_argument("-f", "--force", action="store_true",
                   help="allow deleting a whole bucket/root (with -r)")
    p.add_argument("-n", "--dry-run", action="store_true", help="list what would go")
    _filters(p)

    p = new("touch", cmd_touch, "create empty objects (existing ones are left alone)")
    _url_key(p, many=True)

    p = new("put", cmd_put, "FILE (or stdin) into URL KEY")
    p.add_argument("url")
    p.add_argument("key")
    p.add_argument("file", nargs="?")
    _attr_options(p)
    _compress_options(p)

    p = new("verify", cmd_verify, "compare local files with objects, by size and content")
    p.add_argument("local")
    p.add_argument("remote")

    p = new("sync", cmd_sync, "copy what is missing or differs in size")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--delete", action="store_true",
                   help="also delete destination objects the source lacks")
    p.add_argument("-c", "--checksum", action="store_true",
                   help="also compare the bytes of objects of the same size")
    p.add_argument("-n", "--dry-run", action="store_true", help="say what would change")
    _filters(p)
    _compress_options(p)

    for p, _ in cmds.values():
        _add_globals(p)
    return cmds


def _top_parser(cmds):
    ap = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
        usage=f"{PROG} [global options] COMMAND [options] ARGS  ({PROG} COMMAND --help)")
    ap.add_argument("command", choices=list(cmds))
    _add_globals(ap)
    return ap


def parse(argv):
    cmds = _command_parsers()
    i, n = 0, len(argv)
    while i < n:
        a = argv[i]
        if a in _VALUE_OPTS:
            i += 2
            continue
        if a == "--" or not a.startswith("-"):
            break
        i += 1
    if i >= n or argv[i] not in cmds:
        _top_parser(cmds).parse_args(argv)  # --help, --version, or a usage error (exit 2)
        raise SystemExit(2)
    parser = cmds[argv[i]][0]
    return parser.parse_intermixed_args(argv[:i] + argv[i + 1:])


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    ctx = Ctx(args)
    try:
        args.run(ctx, args)
    except Usage as e:
        if args.debug:
            raise
        print(f"{PROG} {args.command}: {e}", file=sys.stderr)
        return 2
    except Failure as e:
        if args.debug:
            raise
        ctx.error(e)
    except BatchError as e:
        if args.debug:
            raise
        ctx.batch_errors(e)
    except KeyError as e:
        if args.debug:
            raise
        ctx.error(f"no such key: {e.args[0]}")
    except (CloudFilesError, OSError) as e:
        if isinstance(e, BrokenPipeError):  # `cloudfiles-store cat ... | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        if args.debug:
            raise
        ctx.error(e)
    except KeyboardInterrupt:
        # the transfers that could be were given up before this was raised
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130  # 128 + SIGINT, as shells report it
    finally:
        ctx.close()
    return 1 if ctx.failed else 0


if __name__ == "__main__":
    sys.exit(main())
