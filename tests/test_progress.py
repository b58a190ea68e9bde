"""Progress outside a terminal: logged lines for the first item, at a steady interval, and for the last."""
from __future__ import annotations

import io
import logging
import sys

import pytest

from misc import logutils
from misc.logutils import ProgressLog, progress, progress_interval


class _Clock:
    def __init__(self, times):
        self.times = iter(times)

    def __call__(self):
        return next(self.times)


def _done_counts(caplog):
    return [int(r.getMessage().split(": ")[1].split("/")[0]) for r in caplog.records if r.name == "progress"]


def test_interval_in_seconds_logs_first_every_30_s_and_last(caplog):
    # start at t=0, item i finishes at t = 5 + 10 i (11 items): lines at t=5 (first), 35, 65, 95 and the last
    clock = _Clock([0] + [5 + 10 * i for i in range(11)] + [200])
    meter = ProgressLog("loop", total=11, interval=(30.0, 0.0), clock=clock)
    with caplog.at_level(logging.INFO, logger="progress"):
        for _ in range(11):
            meter.update()
        meter.close()
    assert _done_counts(caplog) == [1, 4, 7, 10, 11]
    last = caplog.records[-1].getMessage()
    assert last.startswith("loop: 11/11 it (100.0 %)") and "it/s" in last


def test_interval_as_a_share_of_the_loop(caplog):
    clock = _Clock([0] + list(range(1, 9)))  # one second per item, never 1e9 s apart
    meter = ProgressLog("loop", total=8, interval=progress_interval("25%"), clock=clock)
    with caplog.at_level(logging.INFO, logger="progress"):
        for _ in range(8):
            meter.update()
        meter.close()  # the last update logged already: no duplicate
    assert _done_counts(caplog) == [1, 3, 5, 7, 8]


def test_environment_variable_parsing(monkeypatch):
    monkeypatch.delenv(logutils.PROGRESS_ENV, raising=False)
    assert progress_interval() == (30.0, 0.0)
    monkeypatch.setenv(logutils.PROGRESS_ENV, "5")
    assert progress_interval() == (5.0, 0.0)
    monkeypatch.setenv(logutils.PROGRESS_ENV, "often")
    with pytest.raises(ValueError, match="WSSS_PROGRESS_INTERVAL='often'"):
        progress_interval()


def test_progress_logs_lines_when_stderr_is_not_a_terminal(monkeypatch, caplog):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a TTY, as under nohup or CI
    monkeypatch.setenv(logutils.PROGRESS_ENV, "1000")  # a long interval: first and last only
    with caplog.at_level(logging.INFO, logger="progress"):
        assert list(progress(range(50), desc="make_adv_cam")) == list(range(50))
    messages = [r.getMessage() for r in caplog.records if r.name == "progress"]
    assert len(messages) == 2
    assert messages[0].startswith("make_adv_cam: 1/50 it (2.0 %)")
    assert messages[1].startswith("make_adv_cam: 50/50 it (100.0 %)")
    assert sys.stderr.getvalue() == ""  # no tqdm bar drawn into the log
