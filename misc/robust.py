"""Per-item robustness for the inference passes: output folders that are ready, and bad items skipped under --skip_bad.

    out = prepare_out_dir(args.cam_out_dir)          # created (or a clear error), temp files of a killed run removed
    bad = BadItems("make_cam", skip_bad=args.skip_bad)
    for name in todo:
        with bad.guard(name):                        # --skip_bad: log "skipped <name>: <reason>", count, go on
            ...                                      # otherwise: the error propagates unchanged
    bad.log_summary()

One unreadable tile in ten thousand should not stop a night's run, but it must not vanish silently either: every
skip is logged with its reason and the pass ends with the count and the first names.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
from typing import Iterator

from misc import dist

log = logging.getLogger(__name__)

# The errors one bad item raises: a missing/corrupt/unreadable file (OSError, ValueError), a name without an
# image-level label (KeyError). Programming errors (TypeError, RuntimeError, ...) are never skipped.
ITEM_ERRORS = (OSError, ValueError, KeyError)

# misc.io.atomic_path names its temporary files ".<stem>.<random>.tmp<ext>"
_TEMP_FILE = re.compile(r"^\..+\.tmp(\.[A-Za-z0-9]+)?$")
_WHOLE_PASS = "_wsss_whole_pass"  # marks an exception that BadItems.guard must not skip
ITEM_ATTR = "_wsss_item"  # the item an exception let through by BadItems.guard (no --skip_bad) belongs to

# files decoded despite damage (libjpeg warnings), in this process: (path, reason); BadItems counts them per pass
DAMAGED: list[tuple[str, str]] = []


def note_damaged(path: str, reason: str) -> None:
    """Log a warning naming a file that was decoded despite damage, and count it (see BadItems.log_summary)."""
    DAMAGED.append((path, reason))
    log.warning("%s: %s", path, reason)


def pending_items(names: list[str], artifact_of, *, overwrite: bool, pass_name: str) -> list[str]:
    """The names whose artifact (``artifact_of(name)``) is not complete yet; all of them under ``overwrite``.

    An artifact counts as done only when :func:`misc.io.is_complete` says so (not merely when the file exists): an
    empty or truncated file, e.g. from a full disk under an older version, is logged and redone.
    """
    from misc.io import is_complete

    if overwrite:
        return list(names)
    todo, redo = [], []
    for name in names:
        path = artifact_of(name)
        if not is_complete(path):
            todo.append(name)
            if os.path.exists(path):
                redo.append(path)
    if redo:
        log.warning("%s: %d existing artifact(s) are empty or incomplete and are redone, e.g. %s", pass_name,
                    len(redo), redo[0])
    return todo


def clean_training_outputs(weights_path: str, *folders: str) -> int:
    """Rank 0 of a training pass, before it writes: remove the temporary files a killed run left of the checkpoint,
    its timings sidecar and inside ``folders`` (e.g. the pass's overlay folder, recursively). Returns how many."""
    from misc import artifacts

    removed = remove_stale_temp_files_of(weights_path)
    removed += remove_stale_temp_files_of(artifacts.checkpoint_timings_path(weights_path))
    for folder in folders:
        if os.path.isdir(folder):
            removed += remove_stale_temp_files(folder)
    return removed


def remove_stale_temp_files(folder: str) -> int:
    """Delete the temporary files a killed writer left in ``folder`` and its subfolders; returns how many.

    Call it only when no other process is writing into ``folder`` (rank 0 at the start of a pass, before a barrier).
    """
    removed = 0
    for root, _dirs, files in os.walk(folder):
        removed += _remove_matching(root, files, _TEMP_FILE)
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run in %s", removed, folder)
    return removed


def remove_stale_temp_files_of(path: str) -> int:
    """Delete the temporary files of one file (e.g. a checkpoint) left next to it by a killed writer.

    Only ``path``'s own, so a ``sess/`` folder that other jobs write into is safe; returns how many.
    """
    folder = os.path.dirname(os.path.abspath(path))
    stem, ext = os.path.splitext(os.path.basename(path))
    pattern = re.compile(rf"^\.{re.escape(stem)}\.[^.]+\.tmp{re.escape(ext)}$")
    removed = _remove_matching(folder, os.listdir(folder), pattern) if os.path.isdir(folder) else 0
    if removed:
        log.info("removed %d temporary file(s) of %s left by an interrupted run", removed, path)
    return removed


def _remove_matching(folder: str, files: list[str], pattern: re.Pattern) -> int:
    removed = 0
    for f in files:
        if pattern.match(f):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, f))
                removed += 1
    return removed


def prepare_out_dir(folder: str) -> str:
    """Create an output folder (an error naming it when that is impossible) and clear a killed run's temp files.

    Under torchrun, rank 0 cleans and every rank waits for it, so no rank's fresh temp file is deleted.
    """
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise OSError(f"cannot create output folder {folder!r}: {err.strerror or err}") from err
    if dist.is_main():
        remove_stale_temp_files(folder)
    dist.barrier()
    return folder


def describe(err: BaseException) -> str:
    """One line for an item error (KeyError's str() is the repr of its argument)."""
    if isinstance(err, KeyError) and err.args:
        return str(err.args[0])
    return str(err) or type(err).__name__


class BadItems:
    """Counts the items a pass skipped under ``--skip_bad``; without it, :meth:`guard` lets every error through."""

    def __init__(self, pass_name: str, skip_bad: bool):
        self.pass_name = pass_name
        self.skip_bad = bool(skip_bad)
        self.skipped: list[tuple[str, str]] = []  # (name, reason)
        self._damaged_start = len(DAMAGED)

    @contextlib.contextmanager
    def guard(self, name: str) -> Iterator[None]:
        """Errors of the item ``name`` inside are skipped and counted under --skip_bad (see :meth:`whole_pass`)."""
        try:
            yield
        except ITEM_ERRORS as err:
            if getattr(err, _WHOLE_PASS, False):
                raise
            if not self.skip_bad:
                setattr(err, ITEM_ATTR, name)  # run_sample's one-line error then mentions --skip_bad
                raise
            self.record(name, describe(err))

    @staticmethod
    @contextlib.contextmanager
    def whole_pass() -> Iterator[None]:
        """Errors inside concern the whole pass, never one item (a model loaded lazily inside the item loop): they
        stop the pass even under --skip_bad, instead of skipping every item for the same reason."""
        try:
            yield
        except ITEM_ERRORS as err:
            setattr(err, _WHOLE_PASS, True)
            raise

    def record(self, name: str, reason: str) -> None:
        """Count one skipped item (also for errors caught elsewhere, e.g. in a worker process)."""
        self.skipped.append((name, reason))
        log.warning("%s: skipped %s: %s", self.pass_name, name, reason)

    @property
    def count(self) -> int:
        return len(self.skipped)

    @property
    def damaged(self) -> list[tuple[str, str]]:
        """Files decoded despite damage (logged warnings) since this pass began, in this process."""
        return DAMAGED[self._damaged_start:]

    def log_summary(self) -> None:
        """Log the total (a warning when anything was skipped or decoded despite damage)."""
        if self.damaged:
            log.warning("%s: %d damaged file(s) decoded with warnings (first: %s); check them", self.pass_name,
                        len(self.damaged), ", ".join(p for p, _ in self.damaged[:5]))
        if self.skipped:
            first = ", ".join(n for n, _ in self.skipped[:5])
            log.warning("%s: skipped %d bad item(s) under --skip_bad (first: %s); their artifacts are missing",
                        self.pass_name, self.count, first)
        elif self.skip_bad:
            log.info("%s: no bad item skipped", self.pass_name)
