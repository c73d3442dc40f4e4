"""Watch /proc for processes a payload starts: each carries a unique marker in its command line (or
environment), so the test knows it existed while the audit ran and can check none outlives it."""

from __future__ import annotations

import os
import threading
import time
import uuid


def marked(marker: str) -> list[int]:
    """Live processes (not zombies) whose command line or environment holds ``marker``."""
    needle = marker.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                text = fh.read()
            if needle not in text:
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    text = fh.read()
        except (OSError, IndexError):
            continue
        if needle in text:
            found.append(int(entry))
    return found


class Watch:
    """``with Watch() as w:`` polls /proc in a thread while the block runs; ``w.seen`` is every marked pid
    it saw, ``w.alive()`` those still running now."""

    def __init__(self, every: float = 0.02):
        self.marker = f"mpwatch-{uuid.uuid4().hex}"
        self.every = every
        self.seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.seen.update(marked(self.marker))
            time.sleep(self.every)

    def alive(self) -> list[int]:
        return marked(self.marker)

    def __enter__(self) -> "Watch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.seen.update(marked(self.marker))

    def kill_survivors(self) -> list[int]:
        """Kill what is left (so a failing test leaves nothing running) and say what that was."""
        left = self.alive()
        for pid in left:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        return left
