"""Logging to the terminal and a file, and progress that suits whoever is watching.

In a terminal, long loops show a tqdm bar (none under --quiet). Outside one (nohup, CI, a redirected log) a bar
would be noise, so :func:`progress` logs one INFO line for the first item, then one at a steady interval, and one
for the last: ``make_adv_cam: 12/480 it (2.5 %), 0.41 it/s, eta 19 min``. The interval is
``$WSSS_PROGRESS_INTERVAL``: seconds (default 30), or a share of the loop such as ``10%``; ``0`` logs every item.
Under --quiet those lines still reach the log file (the console shows warnings only).
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_QUIET = False
PROGRESS_ENV = "WSSS_PROGRESS_INTERVAL"
DEFAULT_PROGRESS_SECONDS = 30.0

_progress_log = logging.getLogger("progress")


def setup_logging(log_file: str | None, quiet: bool = False) -> None:
    """Log INFO (WARNING under --quiet) to stderr and everything to ``log_file`` (appended)."""
    global _QUIET
    _QUIET = quiet
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING if quiet else logging.INFO)
    console.setFormatter(fmt)
    root.addHandler(console)
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(fmt)
        root.addHandler(fh)


def log_exception_to_files(logger: logging.Logger, message: str) -> None:
    """Write ``message`` with the current exception's traceback to the log files only (the terminal gets one line)."""
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, message, (), sys.exc_info())
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def progress_interval(value: str | None = None) -> tuple[float, float]:
    """(seconds, fraction) between two progress lines from ``$WSSS_PROGRESS_INTERVAL`` (or ``value``).

    ``"30"`` → (30, 0): every 30 s; ``"10%"`` → (inf, 0.1): every 10 % of the items; ``"0"`` → every item.
    A value that cannot be parsed is an error naming the variable (never silently the default).
    """
    raw = os.environ.get(PROGRESS_ENV, "") if value is None else value
    raw = raw.strip()
    if not raw:
        return DEFAULT_PROGRESS_SECONDS, 0.0
    try:
        if raw.endswith("%"):
            share = float(raw[:-1]) / 100.0
            if not 0.0 <= share <= 1.0:
                raise ValueError
            return float("inf"), share
        seconds = float(raw)
        if seconds < 0:
            raise ValueError
        return seconds, 0.0
    except ValueError:
        raise ValueError(f"${PROGRESS_ENV}={raw!r}: expected seconds (e.g. 30) or a share of the loop (e.g. 10%)"
                         ) from None


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class ProgressLog:
    """Log ``desc: done/total (pct), rate, eta`` for the first step, then at the interval, and at the last step.

        meter = ProgressLog("predict scene.tif", total=480, unit="tiles")
        for ...: meter.update(n, extra="0.15 Mpx/s")
        meter.close()                                   # logs the last line if update() did not
    """

    def __init__(self, desc: str, total: int | None = None, *, unit: str = "it", logger: logging.Logger | None = None,
                 interval: tuple[float, float] | None = None, clock=time.monotonic):
        self.desc, self.total, self.unit = desc, total, unit
        self.logger = logger or _progress_log
        self.seconds, self.share = interval if interval is not None else progress_interval()
        self.clock = clock
        self.start = clock()
        self.done = 0
        self._last_time = None  # when the last line was logged
        self._last_done = 0
        self._closed = False

    def _due(self, now: float) -> bool:
        if self._last_time is None or (self.total is not None and self.done >= self.total):
            return True  # first and last item
        if now - self._last_time >= self.seconds:
            return True
        return bool(self.share) and self.total is not None and \
            (self.done - self._last_done) >= self.share * self.total

    def update(self, n: int = 1, extra: str = "") -> None:
        self.done += n
        now = self.clock()
        if self._due(now):
            self._log(now, extra)

    def _log(self, now: float, extra: str = "") -> None:
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.done}/{self.total} {self.unit} ({100.0 * self.done / self.total:.1f} %)" if self.total
                 else f"{self.done} {self.unit}"]
        if self.done > 1 and elapsed > 0:
            parts.append(f"{rate:.3g} {self.unit}/s")
            if self.total and self.done < self.total:
                parts.append(f"eta {_duration((self.total - self.done) / rate)}")
        if extra:
            parts.append(extra)
        self.logger.info("%s: %s", self.desc, ", ".join(parts))
        self._last_time, self._last_done = now, self.done

    def close(self, extra: str = "") -> None:
        """Log the final count unless the last update already did."""
        if not self._closed and self._last_done != self.done:
            self._log(self.clock(), extra)
        self._closed = True


def _logged(iterable: Iterable[T], desc: str, total: int | None) -> Iterator[T]:
    meter = ProgressLog(desc, total)
    for item in iterable:
        yield item
        meter.update()
    meter.close()


def progress(iterable: Iterable[T], desc: str, total: int | None = None, quiet: bool | None = None) -> Iterable[T]:
    """Progress over ``iterable``: a tqdm bar in a terminal, logged lines otherwise (see the module docstring).

    Under --quiet (or ``quiet=True``) in a terminal there is no bar; outside a terminal the lines go to the log
    (the console's level keeps them off the screen under --quiet).
    """
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    quiet = _QUIET if quiet is None else quiet
    if not sys.stderr.isatty():
        return _logged(iterable, desc, total)
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=quiet, dynamic_ncols=True, leave=False)
