"""Coalescing of byte ranges: the one plan both ``CloudFilesStore.get_ranges`` and
``ZarrStore.get_partial_values`` follow.

Ranges of one object closer than COALESCE_GAP bytes are read as one request (as long as
it stays below COALESCE_MAX bytes) and sliced; a whole-object read in the same batch
serves every range of its key. Ranges are in the engine's form: ``(start, end)`` with
``start`` None for the whole object, ``start < 0`` for a suffix, ``end`` None for "to the
end" (a bounded range has ``0 <= start <= end``).
"""

from __future__ import annotations

# ranges of one object closer than this are read as one request...
COALESCE_GAP = 1 << 20
# ...as long as the merged request stays below this size.
COALESCE_MAX = 64 << 20

# How a range's bytes come out of its request's data (see cut()).
AS_IS = None              # the request is the range itself


def _is_whole(start, end) -> bool:
    return end is None and (start is None or start == 0)


def _of_whole(data, start, end):
    """What (start, end) reads of a whole object's bytes (HTTP range semantics)."""
    if start is None:
        return data
    if start < 0:
        return data[max(0, len(data) + start):]
    if end is None:
        return data[start:]
    return data[start:max(start, end)]


def plan(ranges):
    """``ranges``: a list of ``(key, start, end)``. Returns ``(requests, members)``:
    ``requests`` a list of ``(key, start, end)`` to read, and ``members[j]`` the list of
    ``(index, how)`` of the input ranges request j serves; ``cut(data, how)`` gives a
    range's bytes from its request's data (None stays None: a missing key)."""
    requests: list[tuple] = []
    members: list[list] = []
    by_key: dict = {}
    for i, (key, start, end) in enumerate(ranges):
        by_key.setdefault(key, []).append(i)
    for key, indices in by_key.items():
        if len(indices) > 1 and any(_is_whole(*ranges[i][1:]) for i in indices):
            requests.append((key, None, None))
            members.append([(i, ("whole", ranges[i][1], ranges[i][2])) for i in indices])
            continue
        bounded = []
        for i in indices:
            _key, start, end = ranges[i]
            if len(indices) > 1 and start is not None and end is not None and 0 <= start <= end:
                bounded.append((start, end, i))
            else:
                requests.append((key, start, end))
                members.append([(i, AS_IS)])
        bounded.sort()
        group: list = []
        gstart = gend = 0

        def flush():
            if len(group) == 1:
                requests.append((key, group[0][1], group[0][2]))
                members.append([(group[0][0], AS_IS)])
            else:
                requests.append((key, gstart, gend))
                members.append([(i, ("sub", s - gstart, e - gstart)) for i, s, e in group])

        for s, e, i in bounded:
            if group and s - gend <= COALESCE_GAP and max(gend, e) - gstart <= COALESCE_MAX:
                group.append((i, s, e))
                gend = max(gend, e)
                continue
            if group:
                flush()
            group, gstart, gend = [(i, s, e)], s, e
        if group:
            flush()
    return requests, members


def cut(data, how):
    """The bytes of one range from its request's data (a bytes-like or memoryview)."""
    if data is None or how is AS_IS:
        return data
    if how[0] == "sub":
        return data[how[1]:how[2]]
    return _of_whole(data, how[1], how[2])


def _plain(item) -> bool:
    """An item get_ranges can plan: (str key, int start, int or None end), valid."""
    if not isinstance(item, tuple) or len(item) not in (2, 3) or type(item[0]) is not str:
        return False
    start = item[1]
    end = item[2] if len(item) == 3 else None
    if start is not None and type(start) is not int:
        return False
    if end is not None and (type(end) is not int or start is None or start < 0 or end < start):
        return False
    return True


def get_ranges(core_get_ranges, store, items, raw: bool = False):
    """The mapping's get_ranges: the plan's requests through the engine's batch
    (``core_get_ranges``, which keeps its errors for items it cannot read), then sliced.
    raw: ranges of the stored bytes, each a (bytes, encoding) pair."""
    items = list(items) if not isinstance(items, (str, bytes, bytearray)) else items
    if not isinstance(items, list) or not all(_plain(it) for it in items):
        return core_get_ranges(store, items, raw=raw)  # the engine's own errors for bad input
    ranges = [(it[0], it[1], it[2] if len(it) == 3 else None) for it in items]
    requests, members = plan(ranges)
    results = core_get_ranges(store, requests, raw=raw)
    out = [None] * len(ranges)
    for got, served in zip(results, members):
        data, encoding = got if raw and got is not None else (got, None)
        for i, how in served:
            piece = cut(data, how)
            if piece is not None and type(piece) is not bytes:
                piece = bytes(piece)
            out[i] = (piece, encoding) if raw and piece is not None else piece
    return out
