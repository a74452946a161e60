"""Progress bars for the command line: tqdm on a terminal, nothing otherwise.

tqdm (what CloudFiles uses) draws one line on stderr with the rate and the time left,
redraws at most a few times a second, and is a small pure-Python dependency with no
dependencies of its own.
"""

from __future__ import annotations


class Progress:
    """Objects and (when every size is known) bytes done; a no-op when not enabled."""

    def __init__(self, what: str, total_objects: int, total_bytes: int | None = None,
                 enabled: bool = True):
        self.total_objects = total_objects
        self.objects = 0
        self.bar = None
        if not enabled or total_objects == 0:
            return
        import os
        import sys

        from tqdm import tqdm
        try:
            width = os.get_terminal_size(sys.stderr.fileno()).columns
        except OSError:
            width = 0
        # a terminal that reports no width (a bare pty) would get an empty bar from tqdm
        shape = {"dynamic_ncols": True} if width > 0 else {"ncols": 80}
        self.by_bytes = bool(total_bytes)
        if self.by_bytes:
            self.bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024,
                            desc=what, leave=True, **shape)
        else:
            self.bar = tqdm(total=total_objects, unit=" obj", desc=what, leave=True, **shape)
        self._postfix()

    def _postfix(self):
        self.bar.set_postfix_str(f"{self.objects}/{self.total_objects} objects", refresh=False)

    def update(self, objects: int = 1, nbytes: int = 0):
        self.objects += objects
        if self.bar is None:
            return
        self._postfix()
        self.bar.update(nbytes if self.by_bytes else objects)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
