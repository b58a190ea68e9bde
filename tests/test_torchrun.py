"""torchrun on the CPU (gloo): two processes shard make_cam into the same artifacts as one process, eval runs once on
rank 0, and a two-process DDP train_cam writes one checkpoint."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import run_sample
from misc.io import load_npz
from tests.tiny_data import REPO, make_cam_checkpoint, make_dataset, subprocess_env


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("torchrun")
    d = make_dataset(str(tmp))
    d["tmp"] = tmp
    d["cam_weights"] = make_cam_checkpoint(str(tmp / "sess" / "cam.pth"))
    return d


def torchrun(argv: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             f"--nproc_per_node={nproc}", os.path.join(REPO, "run_sample.py"), *argv],
                            cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_processes_shard_make_cam_like_one(data):
    common = ["--make_cam_pass", "True", "--eval_cam_pass", "True", "--voc12_root", data["root"],
              "--infer_list", data["train"], "--cam_weights_name", data["cam_weights"], "--cam_scales", "1.0,0.5",
              "--cam_num_overlays", "3", "--device", "cpu", "--quiet", "True"]
    one, two = data["tmp"] / "cam_one", data["tmp"] / "cam_two"
    assert run_sample.main(common + ["--cam_out_dir", str(one), "--log_name", str(data["tmp"] / "one")]) == 0
    result = torchrun(common + ["--cam_out_dir", str(two), "--log_name", str(data["tmp"] / "two")])

    assert sorted(os.listdir(one)) == sorted(os.listdir(two))
    assert sorted(os.listdir(one / "overlays")) == sorted(os.listdir(two / "overlays"))
    names = [f for f in os.listdir(one) if f.endswith(".npz")]
    assert len(names) == 12
    for f in names:
        a, b = load_npz(str(one / f)), load_npz(str(two / f))
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].shape == b[k].shape and np.allclose(a[k], b[k], atol=1e-5), (f, k)
    # each rank did its half (round-robin shard), and eval_cam ran once, on rank 0, over all 12
    log = (data["tmp"] / "two.log").read_text()
    assert "world size 2" in log and "make_cam: 6 images to do" in log
    assert json.loads((two / "eval_cam.json").read_text())["num_images"] == 12
    assert json.loads((two / "eval_cam.json").read_text())["miou"] == pytest.approx(
        json.loads((one / "eval_cam.json").read_text())["miou"], abs=1e-6)
    assert "Traceback" not in result.stderr


def test_two_process_ddp_train_cam_writes_one_checkpoint(data):
    weights = data["tmp"] / "ddp" / "cam.pth"
    torchrun(["--train_cam_pass", "True", "--voc12_root", data["root"], "--train_list", data["train"],
              "--cam_crop_size", "64", "--cam_batch_size", "2", "--cam_num_epochs", "1", "--device", "cpu",
              "--cam_weights_name", str(weights), "--log_name", str(data["tmp"] / "ddp"), "--quiet", "True"])
    assert sorted(os.listdir(weights.parent)) == ["args_train_cam.json", "cam.pth", "cam.pth.timings.json"]  # rank 0
    ckpt = torch.load(weights, map_location="cpu", weights_only=False)
    # 12 images over 2 ranks, 2 per batch: 3 steps per rank and epoch (DDP keeps the ranks' weights equal)
    assert ckpt["epoch"] == 1 and ckpt["step"] == 3 and ckpt["kind"] == "cam"
    assert np.isfinite(ckpt["metrics"]["loss"])
    log = (data["tmp"] / "ddp.log").read_text()
    assert "world size 2" in log and "train_cam epoch 1/1" in log
