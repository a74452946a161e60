"""Progress bars for the command line: tqdm on a terminal, nothing otherwise.

tqdm (what CloudFiles uses) draws one line on stderr with the rate and the time left,
redraws at most a few times a second, and is a small pure-Python dependency with no
dependencies of its own.

Bytes move the bar two ways: ``update(objects, nbytes)`` as objects (or pieces of one,
``update(0, nbytes)``) complete, and, for uploads, ``watch(store)``: a thread reads the
destination store's ``upload_bytes_held`` (the parts of its uploads in progress the
service holds already, counted by the C engine) a few times a second, so one large
object's bar moves part by part. The bar shows the completed bytes plus those held,
never less than it showed before (an upload's held bytes leave the count a moment before
its completion is reported) and never more than the total.
"""

from __future__ import annotations

import threading

# seconds between two reads of the stores' upload_bytes_held
POLL_INTERVAL = 0.2


class Progress:
    """Objects and (when every size is known) bytes done; a no-op when not enabled."""

    def __init__(self, what: str, total_objects: int, total_bytes: int | None = None,
                 enabled: bool = True):
        self.total_objects = total_objects
        self.objects = 0
        self.bar = None
        self.by_bytes = False
        self._done_bytes = 0      # bytes of what update() reported complete
        self._held_bytes = 0      # the watched stores' upload_bytes_held, last read
        self._shown = 0           # the bar's position (bytes or objects)
        self._lock = threading.Lock()  # update() comes from transfer threads too
        self._stop = threading.Event()
        self._poller = None
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
        self.total = total_bytes if self.by_bytes else total_objects
        if self.by_bytes:
            self.bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024,
                            desc=what, leave=True, **shape)
        else:
            self.bar = tqdm(total=total_objects, unit=" obj", desc=what, leave=True, **shape)
        self._postfix()

    def _postfix(self):
        self.bar.set_postfix_str(f"{self.objects}/{self.total_objects} objects", refresh=False)

    def _redraw(self):
        """Move the bar to what is known now (under the lock)."""
        now = self._done_bytes + self._held_bytes if self.by_bytes else self.objects
        now = min(self.total, max(self._shown, now))
        self._postfix()
        if now != self._shown:
            self.bar.update(now - self._shown)
            self._shown = now

    def update(self, objects: int = 1, nbytes: int = 0):
        with self._lock:
            self.objects += objects
            self._done_bytes += nbytes
            if self.bar is not None:
                self._redraw()

    def watch(self, *stores):
        """Also count the bytes the stores' uploads in progress have stored (a thread reads
        them every POLL_INTERVAL seconds until the bar closes)."""
        if self.bar is None or not self.by_bytes or not stores:
            return self

        def poll():
            while not self._stop.wait(POLL_INTERVAL):
                held = sum(s.upload_bytes_held for s in stores)
                with self._lock:
                    self._held_bytes = held
                    self._redraw()

        self._poller = threading.Thread(target=poll, name="cloudfiles-progress", daemon=True)
        self._poller.start()
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
        if self.bar is not None:
            self.bar.close()
