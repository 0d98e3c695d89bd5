"""Progress of a long loop, for `detect infer`, `detect eval` and `detect train` alike.

    progress = ProgressLog(total, log, tty=sys.stderr.isatty(), desc="infer", unit="image")
    progress.update(n=len(batch), failed=k, note="loss 0.8123")   # per batch or step
    progress.close()

On a terminal it is a tqdm bar. Without one (a batch job, a log file) it is one line every
`every` items or `every_seconds` seconds, whichever comes first, and at the end:
`infer: 1500/20000 images (7.5%), 41.2 images/s, ETA 00:07:29, 0 failed`.
"""

from __future__ import annotations

import math
import time
from typing import Callable

from tqdm import tqdm

LOG_EVERY_SECONDS = 30.0


def format_eta(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) if math.isfinite(seconds) and seconds >= 0 else "?"


class ProgressLog:
    """A bar on a TTY; else a line every `every` items (0: never by count) or `every_seconds`."""

    def __init__(
        self,
        total: int,
        log: Callable[[str], None],
        *,
        tty: bool,
        desc: str,
        unit: str = "image",
        every: int = 500,
        every_seconds: float = LOG_EVERY_SECONDS,
        count_failures: bool = True,
    ) -> None:
        self.total, self.log, self.desc, self.unit = total, log, desc, unit
        self.every, self.every_seconds, self.count_failures = every, every_seconds, count_failures
        self.start = self.last = time.monotonic()
        self.done = self.failed = self.logged_at = 0
        self.bar = tqdm(total=total, unit=unit, desc=desc, leave=False, dynamic_ncols=True) if tty else None

    def update(self, failed: int | bool = 0, *, n: int = 1, note: str = "") -> None:
        self.done += n
        self.failed += int(failed)
        if self.bar is not None:
            self.bar.update(n)
            if note:
                self.bar.set_postfix_str(note, refresh=False)
            return
        now = time.monotonic()
        by_count = self.every > 0 and self.done - self.logged_at >= self.every
        if by_count or now - self.last >= self.every_seconds or self.done >= self.total:
            self.log(self.line(now, note))
            self.last, self.logged_at = now, self.done

    def line(self, now: float, note: str = "") -> str:
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else math.inf
        text = (
            f"{self.desc}: {self.done}/{self.total} {self.unit}s ({100 * self.done / max(self.total, 1):.1f}%), "
            f"{rate:.1f} {self.unit}s/s, ETA {format_eta(eta)}"
        )
        if self.count_failures:
            text += f", {self.failed} failed"
        return text + (f", {note}" if note else "")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
