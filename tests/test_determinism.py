"""Same inputs and --seed → identical artifacts on the CPU: train_cam + make_cam run twice into two folders give
byte-identical CAMs, overlays and JSON (paths aside) and equal weights; run twice into the same folder, even the
checkpoint file is byte-identical (timings live in the sidecar, not in the weights file); another seed gives other
weights."""
import json
import os

import pytest
import torch

import run_sample
from tests.tiny_data import make_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("determinism")
    d = make_dataset(str(tmp))
    d["tmp"] = tmp
    return d


def train_and_make_cams(data, out, seed: int) -> None:
    assert run_sample.main([
        "--train_cam_pass", "True", "--make_cam_pass", "True", "--voc12_root", data["root"],
        "--train_list", data["train"], "--infer_list", data["train"], "--seed", str(seed), "--device", "cpu",
        "--cam_crop_size", "64", "--cam_batch_size", "4", "--cam_num_epochs", "2", "--cam_scales", "1.0,0.5",
        "--cam_num_overlays", "2", "--cam_weights_name", str(out / "sess" / "cam.pth"),
        "--cam_out_dir", str(out / "cam"), "--quiet", "True", "--log_name", str(out / "log")]) == 0


def files_under(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(r, f), folder) for r, _, fs in os.walk(folder) for f in fs)


def state_dict(path):
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_same_seed_same_bytes(data):
    a, b = data["tmp"] / "run_a", data["tmp"] / "run_b"
    train_and_make_cams(data, a, seed=5)
    train_and_make_cams(data, b, seed=5)
    files = files_under(a)
    assert files == files_under(b)
    assert len([f for f in files if f.endswith(".npz")]) == 12 and "sess/cam.pth" in files
    for f in files:
        if f == "log.log" or f.endswith(".timings.json"):
            continue  # timestamps, seconds per epoch
        if f.endswith(".pth"):
            sa, sb = state_dict(a / f), state_dict(b / f)
            assert sa.keys() == sb.keys()
            assert all(torch.equal(sa[k], sb[k]) for k in sa), f
        elif f.endswith(".json"):  # the arguments name the run's own folder
            text_b = (b / f).read_text().replace(str(b), str(a))
            assert json.loads((a / f).read_text()) == json.loads(text_b), f
            assert (a / f).read_text() == text_b, f
        else:
            assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_same_seed_same_checkpoint_bytes(data):
    a = data["tmp"] / "run_a"
    if not (a / "sess" / "cam.pth").exists():
        train_and_make_cams(data, a, seed=5)
    first = (a / "sess" / "cam.pth").read_bytes()
    timings = json.loads((a / "sess" / "cam.pth.timings.json").read_text())
    assert [row["epoch"] for row in timings["checkpoints"]] == [1, 2]
    assert all(row["epoch_seconds"] > 0 for row in timings["checkpoints"])
    ckpt = torch.load(a / "sess" / "cam.pth", map_location="cpu", weights_only=False)
    assert "epoch_seconds" not in ckpt["metrics"] and "loss" in ckpt["metrics"]
    train_and_make_cams(data, a, seed=5)  # again, same paths: every byte of the checkpoint is the same
    assert (a / "sess" / "cam.pth").read_bytes() == first


def test_another_seed_other_weights(data):
    a, c = data["tmp"] / "run_a", data["tmp"] / "run_c"
    if not (a / "sess" / "cam.pth").exists():
        train_and_make_cams(data, a, seed=5)
    train_and_make_cams(data, c, seed=6)
    sa, sc = state_dict(a / "sess" / "cam.pth"), state_dict(c / "sess" / "cam.pth")
    assert not torch.equal(sa["classifier.weight"], sc["classifier.weight"])
