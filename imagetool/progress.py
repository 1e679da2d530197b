"""A progress display for terminals: one line per blob in flight and a total line."""
from __future__ import annotations

import threading
import time


class Progress:
    def __init__(self, stream, interval: float = 0.1):
        self.stream = stream
        self.interval = interval
        self.blobs: dict[str, list[int]] = {}   # digest → [done, size]
        self.lock = threading.Lock()
        self.last = 0.0
        self.lines = 0

    def start(self, digest: str, size: int, have: int) -> None:
        with self.lock:
            self.blobs[digest] = [have, size]
        self._draw()

    def advance(self, digest: str, n: int) -> None:
        with self.lock:
            self.blobs[digest][0] += n
        self._draw()

    def done(self, digest: str) -> None:
        with self.lock:
            if digest in self.blobs:
                self.blobs[digest][0] = self.blobs[digest][1]
        self._draw(force=True)

    def close(self) -> None:
        self._draw(force=True)

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        with self.lock:
            if not force and now - self.last < self.interval:
                return
            self.last = now
            rows = [f"{d.split(':')[1][:12]}  {_bar(done, size)}  {_mb(done)}/{_mb(size)}"
                    for d, (done, size) in self.blobs.items()]
            total = sum(v[0] for v in self.blobs.values()), sum(v[1] for v in self.blobs.values())
            rows.append(f"{'total':12}  {_bar(*total)}  {_mb(total[0])}/{_mb(total[1])}")
            out = ("\x1b[F" * self.lines) + "".join(f"\x1b[2K{r}\n" for r in rows)
            self.lines = len(rows)
        self.stream.write(out)
        self.stream.flush()


def _bar(done: int, size: int, width: int = 30) -> str:
    fill = width * done // size if size else width
    return "[" + "#" * fill + "." * (width - fill) + "]"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}MB"
