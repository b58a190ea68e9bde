"""A tiny prepared data set and CAM checkpoint for the robustness tests (the contract test's fixture pattern, smaller).

``make_dataset`` runs the real preparation (synthetic scenes → data.prepare → write_numpy) into ``<tmp>/data`` and
``<tmp>/lists``; ``make_cam_checkpoint`` writes an untrained, self-describing CAM checkpoint so inference passes can
run without a training pass.
"""
from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_dataset(tmp, *, scenes: int = 4, scene_size: int = 128, patch: int = 64, seed: int = 1) -> dict:
    """``scenes`` synthetic scenes cut into ``patch``² patches (4 per 128² scene); returns paths."""
    import write_numpy
    from data import prepare, synthetic

    raw = os.path.join(tmp, "raw")
    synthetic.write_dataset(raw, num_tiles=1, scenes_per_tile=scenes, size=(scene_size, scene_size), seed=seed)
    root = os.path.join(tmp, "data")
    lists = os.path.join(tmp, "lists")
    prepare.prepare(raw, raw, palette="dubai", fg_classes=["building"], patch_size=patch, out_root=root,
                    list_out=os.path.join(lists, "all.txt"), quiet=True)
    write_numpy.main(["--voc12_root", root, "--list", os.path.join(lists, "all.txt"),
                      "--out_list", os.path.join(lists, "train.txt"),
                      "--out_pos_list", os.path.join(lists, "train_building.txt")])
    return {"root": root, "lists": lists, "train": os.path.join(lists, "train.txt"),
            "all": os.path.join(lists, "all.txt")}


def make_cam_checkpoint(path: str, num_classes: int = 1) -> str:
    """An untrained CAMNet (ImageNet backbone) saved as train_cam would save it."""
    import torch

    from misc.cli import build_parser
    from misc.torchutils import save_checkpoint
    from net.cam_net import CAMNet

    torch.manual_seed(0)
    model = CAMNet(backbone="efficientnet_lite0", num_classes=num_classes, pretrained="default")
    save_checkpoint(path, model=model, args=build_parser().parse_args([]), step=0,
                    extra={"epoch": 0, "num_classes": num_classes, "kind": "cam"})
    return path


def subprocess_env() -> dict:
    """Environment for child runs: one thread (the same arithmetic as the in-process runs), repo on the path."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=REPO + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def run_cli(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """``python run_sample.py argv`` in a child process (one thread); returns the completed process."""
    return subprocess.run([sys.executable, os.path.join(REPO, "run_sample.py"), *argv], cwd=REPO,
                          env=subprocess_env(), capture_output=True, text=True, timeout=timeout)
