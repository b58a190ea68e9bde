"""Killed runs resume to the same result: SIGKILL a pass in a child process, rerun it, compare with an uninterrupted run.

make_cam: the rerun skips the CAMs already written, writes the rest, and every .npz equals (np.array_equal) the one of
an uninterrupted run; no temporary file survives. train_cam: killed after its first epoch checkpoint, rerun with
--resume, the final weights equal (torch.equal) those of an uninterrupted run.
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import run_sample
from misc import artifacts
from misc.io import load_npz
from tests.tiny_data import REPO, make_cam_checkpoint, make_dataset, subprocess_env

CAM_SCALES = "1.0,0.5,1.5,2.0,3.0"  # slow enough per image to kill the child in the middle of the list


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    d = make_dataset(str(tmp))
    d["tmp"] = tmp
    d["cam_weights"] = make_cam_checkpoint(str(tmp / "sess" / "cam.pth"))
    return d


def kill_when(argv: list[str], ready, timeout: float = 120) -> None:
    """Start ``run_sample.py argv`` as a child, SIGKILL it as soon as ``ready()`` is true (polled every 2 ms)."""
    child = subprocess.Popen([sys.executable, os.path.join(REPO, "run_sample.py"), *argv], cwd=REPO,
                             env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    try:
        while not ready():
            if child.poll() is not None:
                pytest.fail(f"the child finished (rc {child.returncode}) before it could be killed: "
                            f"{child.stderr.read().decode()[-2000:]}")
            if time.time() > deadline:
                pytest.fail("the child never reached the kill point")
            time.sleep(0.002)
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL


def temp_files(folder) -> list[str]:
    return [os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs if ".tmp" in f]


def test_make_cam_killed_and_rerun_equals_uninterrupted(data):
    names = open(data["train"]).read().split()
    assert len(names) == 12
    common = ["--make_cam_pass", "True", "--voc12_root", data["root"], "--infer_list", data["train"],
              "--cam_weights_name", data["cam_weights"], "--cam_scales", CAM_SCALES, "--cam_num_overlays", "3",
              "--quiet", "True", "--device", "cpu", "--log_name", str(data["tmp"] / "log")]
    reference = data["tmp"] / "cam_reference"
    assert run_sample.main(common + ["--cam_out_dir", str(reference)]) == 0

    resumed = data["tmp"] / "cam_resumed"
    def cams():  # finished CAMs (a temporary file starts with ".")
        return [f for f in os.listdir(resumed) if f.endswith(".npz") and not f.startswith(".")]

    done = lambda: len(cams()) if resumed.is_dir() else 0  # noqa: E731
    kill_when(common + ["--cam_out_dir", str(resumed)], ready=lambda: done() >= 3)
    finished_before = done()
    assert 3 <= finished_before < len(names), "the kill should land in the middle of the list"
    # a temporary file as a SIGKILL in the middle of a write leaves it (the kill above may or may not have)
    stale = resumed / f".{names[-1]}.abc123.tmp.npz"
    stale.write_bytes(b"half a zip")
    mtimes = {f: os.path.getmtime(resumed / f) for f in cams()}

    assert run_sample.main(common + ["--cam_out_dir", str(resumed)]) == 0
    assert temp_files(resumed) == [] and temp_files(reference) == []
    for f, mtime in mtimes.items():  # the rerun skipped what was done (no --overwrite)
        assert os.path.getmtime(resumed / f) == mtime
    assert sorted(os.listdir(resumed)) == sorted(os.listdir(reference))
    assert sorted(os.listdir(resumed / "overlays")) == sorted(os.listdir(reference / "overlays"))
    for name in names:
        a = load_npz(artifacts.cam_path(str(resumed), name))
        b = load_npz(artifacts.cam_path(str(reference), name))
        assert a.keys() == b.keys()
        assert all(np.array_equal(a[k], b[k]) for k in a), name

    # --overwrite recomputes every item (and the results do not change)
    assert run_sample.main(common + ["--cam_out_dir", str(resumed), "--overwrite", "True"]) == 0
    assert all(os.path.getmtime(resumed / f) > mtime for f, mtime in mtimes.items())


def test_train_cam_killed_and_resumed_equals_uninterrupted(data):
    epochs = 4
    common = ["--train_cam_pass", "True", "--voc12_root", data["root"], "--train_list", data["train"],
              "--cam_crop_size", "64", "--cam_batch_size", "4", "--cam_num_epochs", str(epochs), "--seed", "7",
              "--quiet", "True", "--device", "cpu", "--log_name", str(data["tmp"] / "log")]
    reference = data["tmp"] / "ref" / "cam.pth"
    assert run_sample.main(common + ["--cam_weights_name", str(reference)]) == 0

    resumed = data["tmp"] / "killed" / "cam.pth"
    kill_when(common + ["--cam_weights_name", str(resumed)], ready=resumed.is_file)
    killed_at = torch.load(resumed, map_location="cpu", weights_only=False)["epoch"]
    assert 1 <= killed_at < epochs, "the kill should land before the last epoch"
    assert run_sample.main(common + ["--cam_weights_name", str(resumed), "--resume", "True"]) == 0

    a = torch.load(resumed, map_location="cpu", weights_only=False)
    b = torch.load(reference, map_location="cpu", weights_only=False)
    assert a["epoch"] == b["epoch"] == epochs and a["step"] == b["step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert temp_files(resumed.parent) == []
