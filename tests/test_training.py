"""The shared training frame and epoch loop (misc/training.py) on a toy model, with hand-worked expectations."""
import json
import os
from types import SimpleNamespace

import pytest
import torch

from misc import artifacts
from misc.torchutils import PolyOptimizer, load_checkpoint, resume_checkpoint, save_checkpoint
from misc.training import Step, open_training, per_image_means, per_image_sums, train_epochs

# 3 batches of 2 samples per epoch: x = (2, 1), target y = 2x
BATCHES = [(torch.tensor([[1.0], [2.0]]), torch.tensor([[2.0], [4.0]])),
           (torch.tensor([[0.5], [1.5]]), torch.tensor([[1.0], [3.0]])),
           (torch.tensor([[3.0], [-1.0]]), torch.tensor([[6.0], [-2.0]]))]


def _args(resume=False):
    return SimpleNamespace(resume=resume, seed=0)


def _toy(tmp_path, *, epochs=3, resume=False, die_after=None, calls=None):
    """Train a 1→1 linear model; ``die_after``: the run is killed right after saving that epoch's checkpoint."""
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    optimizer = PolyOptimizer([{"params": model.parameters()}], lr=0.05, weight_decay=0.0,
                              max_step=len(BATCHES) * epochs)
    weights = str(tmp_path / "toy.pth")
    args = _args(resume=resume)
    start, _ = open_training(args, "train_toy", weights, resume=lambda: resume_checkpoint(
        weights, model, optimizer, expect={"kind": "toy"}))
    calls = calls if calls is not None else []

    def step(batch):
        x, y = batch
        loss = ((model(x) - y) ** 2).mean()
        return Step(loss, {"loss": loss.item() * len(x), "seen": len(x)}, after=lambda: {"after": 1})

    def save(epoch_done, metrics):
        save_checkpoint(weights, model=model, args=args, step=optimizer.global_step, metrics=metrics,
                        optimizer=optimizer, extra={"kind": "toy", "epoch": epoch_done})
        if epoch_done == die_after:
            raise KeyboardInterrupt

    def log_epoch(epoch, metrics, sums):
        calls.append((epoch, dict(sums)))

    metrics = train_epochs("train_toy", model=model, optimizer=optimizer, loader=BATCHES, num_epochs=epochs,
                           start_epoch=start, begin_epoch=lambda e: None, step=step,
                           summarize=per_image_means(["loss"]), log_epoch=log_epoch, save=save)
    return start, metrics, weights, calls


def test_sums_means_and_timings(tmp_path):
    start, metrics, weights, calls = _toy(tmp_path)
    assert start == 0
    # per epoch: 3 steps of 2 samples -> seen 6; after() adds 1 per step -> 3
    assert [e for e, _ in calls] == [0, 1, 2]
    assert all(s["seen"] == 6 and s["after"] == 3 for _, s in calls)
    assert metrics["loss"] == pytest.approx(calls[-1][1]["loss"] / 6)
    assert metrics["epoch_seconds"] >= 0
    ckpt = load_checkpoint(weights)
    assert ckpt["epoch"] == 3 and ckpt["step"] == 9 and set(ckpt["metrics"]) == {"loss"}  # timings kept out
    rows = json.load(open(artifacts.checkpoint_timings_path(weights)))["checkpoints"]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and [r["step"] for r in rows] == [3, 6, 9]
    assert os.path.isfile(tmp_path / "args_train_toy.json")


def test_nan_loss_stops_with_a_clear_error_and_saves_nothing(tmp_path):
    model = torch.nn.Linear(1, 1)
    optimizer = PolyOptimizer([{"params": model.parameters()}], lr=0.1, weight_decay=0.0, max_step=10)
    saved = []

    def step(batch):  # the second step diverges
        x, _ = batch
        loss = model(x).mean() * (float("nan") if optimizer.global_step == 1 else 1.0)
        return Step(loss, {})

    with pytest.raises(FloatingPointError, match=r"^train_toy epoch 2 step 1: loss is nan \(not finite\)"):
        train_epochs("train_toy", model=model, optimizer=optimizer, loader=BATCHES, num_epochs=3, start_epoch=1,
                     begin_epoch=lambda e: None, step=step, summarize=dict, log_epoch=lambda *a: None,
                     save=lambda *a: saved.append(a))
    assert saved == [] and optimizer.global_step == 1  # one good step, then the stop before backward


def test_killed_run_resumes_from_its_last_epoch_and_equals_an_uninterrupted_one(tmp_path):
    _, _, straight, _ = _toy(tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        _toy(tmp_path / "killed", die_after=1)
    assert load_checkpoint(str(tmp_path / "killed" / "toy.pth"))["epoch"] == 1
    start, _, resumed, calls = _toy(tmp_path / "killed", resume=True)
    assert start == 1 and [e for e, _ in calls] == [1, 2]  # epoch 0 is not redone
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert a["step"] == b["step"] == 9
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key


def test_open_training_removes_a_killed_runs_temp_files_only(tmp_path):
    weights = tmp_path / "toy.pth"
    overlays = tmp_path / "overlays"
    overlays.mkdir()
    stale = [tmp_path / ".toy.abc123.tmp.pth", tmp_path / ".toy.pth.timings.x1.tmp.json", overlays / ".a.x2.tmp.png"]
    keep = [tmp_path / ".other.abc123.tmp.pth", tmp_path / "toy.pth.timings.json"]  # another job's, a real file
    for path in stale + keep:
        path.write_bytes(b"x")
    start, ckpt = open_training(_args(), "train_toy", str(weights), str(overlays), resume=lambda: pytest.fail())
    assert (start, ckpt) == (0, None)  # no --resume: resume() is never called
    assert [p.exists() for p in stale] == [False, False, False]
    assert [p.exists() for p in keep] == [True, True]
    assert json.load(open(tmp_path / "args_train_toy.json"))["resume"] is False


def test_per_image_sums_and_means_by_hand():
    losses = {"total": torch.tensor(0.5), "neg": torch.tensor(2.0)}
    first = per_image_sums(losses, ("total", "neg"), 4)
    assert first == {"total": 2.0, "neg": 8.0, "seen": 4}
    # a second batch of 2 with total 1.0, neg 0.5: means (2 + 2) / 6 and (8 + 1) / 6
    assert per_image_means(("total", "neg"))({"total": 4.0, "neg": 9.0, "seen": 6}) == {"total": 4 / 6, "neg": 1.5}
