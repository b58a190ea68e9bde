"""Logging to the terminal and a file, and progress bars that keep quiet when nobody is watching."""
from __future__ import annotations

import logging
import os
import sys
from typing import Iterable, TypeVar

T = TypeVar("T")
_QUIET = False


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


def progress(iterable: Iterable[T], desc: str, total: int | None = None) -> Iterable[T]:
    """tqdm over ``iterable``; disabled under --quiet or when stderr is not a terminal (CI logs stay clean)."""
    from tqdm import tqdm

    disable = _QUIET or not sys.stderr.isatty()
    return tqdm(iterable, desc=desc, total=total, disable=disable, dynamic_ncols=True, leave=False)
