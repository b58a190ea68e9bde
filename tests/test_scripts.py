"""The shell scripts users run (demo.sh, bench/*.sh) parse, and the Python snippets they embed compile."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([ROOT / "demo.sh", ROOT / "run_recipe.sh", *(ROOT / "bench").glob("*.sh"), ROOT / ".ci" / "run"])


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_script_parses(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_embedded_python_compiles(script):
    text = script.read_text()
    for k, body in enumerate(re.findall(r"<<'EOF'\n(.*?)\nEOF\n", text, flags=re.S)):
        compile(body, f"{script.name}:heredoc{k}", "exec")


def test_pseudo_label_quality_by_hand(tmp_path):
    """bench/pseudo_label_quality.py on a 2×4 image whose answers are counted by hand."""
    import sys

    import numpy as np

    sys.path.insert(0, str(ROOT / "bench"))
    from pseudo_label_quality import ir_label_quality

    from misc import artifacts
    from misc.io import save_png

    root, ir_dir = str(tmp_path / "data"), str(tmp_path / "ir")
    gt = np.array([[1, 1, 0, 0], [1, 0, 0, 255]], np.uint8)
    label = np.array([[1, 1, 1, 255], [0, 0, 0, 1]], np.uint8)  # last pixel: ground truth 255, not counted
    save_png(artifacts.mask_path(root, "a"), gt)
    save_png(artifacts.ir_label_path(ir_dir, "a"), label)
    (tmp_path / "data" / "classes.json").write_text('{"classes": ["background", "building"]}')
    q = ir_label_quality(root, ["a"], ir_dir)
    # 7 valid pixels: foreground labels at 3 (2 right), background at 3 (2 right), 1 unsure
    assert q["fg_cover"] == pytest.approx(3 / 7) and q["fg_precision"] == pytest.approx(2 / 3)
    assert q["bg_cover"] == pytest.approx(3 / 7) and q["bg_precision"] == pytest.approx(2 / 3)
    assert q["unsure"] == pytest.approx(1 / 7)
    assert q["building_precision"] == pytest.approx(2 / 3) and q["building_recall"] == pytest.approx(2 / 3)


def test_pseudo_label_quality_background_free_by_hand(tmp_path):
    """Three classes, no background: per-class precision and recall counted by hand."""
    import sys

    import numpy as np

    sys.path.insert(0, str(ROOT / "bench"))
    from pseudo_label_quality import ir_label_quality

    from misc import artifacts
    from misc.io import save_png

    root, ir_dir = str(tmp_path / "data"), str(tmp_path / "ir")
    gt = np.array([[1, 1, 2, 2, 3, 3]], np.uint8)
    label = np.array([[1, 2, 2, 255, 3, 1]], np.uint8)
    save_png(artifacts.mask_path(root, "a"), gt)
    save_png(artifacts.ir_label_path(ir_dir, "a"), label)
    (tmp_path / "data" / "classes.json").write_text('{"classes": ["background", "a", "b", "c"]}')
    q = ir_label_quality(root, ["a"], ir_dir)
    # confident: 5 of 6 pixels, 3 right (positions 0, 2, 4); no background label at all
    assert q["fg_cover"] == pytest.approx(5 / 6) and q["confident_precision"] == pytest.approx(3 / 5)
    assert q["bg_cover"] == 0 and q["unsure"] == pytest.approx(1 / 6)
    # class a: labelled at 0 and 5, right at 0 → precision 1/2; its 2 ground-truth pixels: 1 covered → recall 1/2
    assert q["a_precision"] == pytest.approx(1 / 2) and q["a_recall"] == pytest.approx(1 / 2)
    assert q["b_precision"] == pytest.approx(1 / 2) and q["b_recall"] == pytest.approx(1 / 2)
    assert q["c_precision"] == pytest.approx(1.0) and q["c_recall"] == pytest.approx(1 / 2)


def test_crf_sweep_scores_the_background_free_argmax_by_hand(tmp_path):
    """crf-sweep's first row is eval_cam's background-free argmax (mean-scaled), counted by hand; a CRF row on an
    image of two flat colour halves whose labels follow the halves keeps them."""
    import sys

    import numpy as np

    sys.path.insert(0, str(ROOT / "bench"))
    from pseudo_label_quality import crf_sweep

    from misc import artifacts
    from misc.io import save_npz, save_png
    from PIL import Image

    root, cam_dir = tmp_path / "data", str(tmp_path / "cam")
    (root / "JPEGImages").mkdir(parents=True)
    (root / "classes.json").write_text('{"classes": ["background", "a", "b"]}')
    image = np.zeros((8, 8, 3), np.uint8)
    image[:, 4:] = 200
    Image.fromarray(image).save(root / "JPEGImages" / "x.png")
    gt = np.ones((8, 8), np.uint8)
    gt[:, 4:] = 2
    save_png(artifacts.mask_path(str(root), "x"), gt)
    # class a (key 0) is flat 0.5; class b (key 1) is 1.0 on the right half, 0.2 on the left. Mean-scaled:
    # a = 1 everywhere, b = 1/0.6 (right) and 0.2/0.6 (left): the argmax is a on the left, b on the right.
    maps = np.stack([np.full((8, 8), 0.5, np.float32), np.where(gt == 2, 1.0, 0.2).astype(np.float32)])
    save_npz(artifacts.cam_path(cam_dir, "x"), keys=np.array([0, 1]), cam=maps[:, ::4, ::4], high_res=maps)
    rows = crf_sweep(str(root), ["x"], cam_dir, [{"bilateral_sxy": 10.0, "bilateral_srgb": 13.0}])
    assert rows[0]["setting"] is None and rows[0]["miou"] == pytest.approx(1.0)
    assert rows[1]["miou"] == pytest.approx(1.0) and rows[1]["iou"]["background"] is None
    # one stray "b" pixel inside the flat left half: the argmax keeps it (a: 31/32, b: 32/33 IoU), the CRF removes it
    maps[1, 2, 1] = 1.0
    save_npz(artifacts.cam_path(cam_dir, "x"), keys=np.array([0, 1]), cam=maps[:, ::4, ::4], high_res=maps)
    rows = crf_sweep(str(root), ["x"], cam_dir, [{}])
    assert rows[0]["iou"]["a"] == pytest.approx(31 / 32) and rows[0]["iou"]["b"] == pytest.approx(32 / 33)
    assert rows[1]["miou"] == pytest.approx(1.0)
    maps[1, 2, 1] = 0.2
    save_npz(artifacts.cam_path(cam_dir, "x"), keys=np.array([0, 1]), cam=maps[:, ::4, ::4], high_res=maps)
    # with max scaling b never beats a on the left (0.2 < 0.5) and always on the right: the same labels here
    rows = crf_sweep(str(root), ["x"], cam_dir, [], class_scale="max")
    assert rows[0]["iou"] == {"background": None, "a": 1.0, "b": 1.0}


@pytest.mark.parametrize("argv,fragment", [
    ([], "--images is required"),
    (["--images", "nowhere_at_all", "--masks", "x", "--test", "a"], "does not exist"),
    (["--images", ".", "--test", "a"], "give --masks DIR or --tags FILE"),
    (["--images", ".", "--masks", ".", "--tags", "t.csv", "--test", "a"], "not both"),
    (["--images", ".", "--masks", "."], "--test is required"),
    (["--bogus"], "unknown option --bogus"),
])
def test_run_recipe_refuses_bad_arguments_before_running_anything(tmp_path, argv, fragment):
    """run_recipe.sh checks its arguments up front: exit 2 and one line, nothing written."""
    result = subprocess.run(["bash", str(ROOT / "run_recipe.sh"), *argv, "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr
    assert not (tmp_path / "out").exists()


def test_run_recipe_end_to_end_on_generated_scenes_and_resumes(tmp_path):
    """run_recipe.sh from masks to report.html on tiny generated scenes (1 epoch each, the CAM classifier on smaller
    patches), then a rerun that resumes."""
    import json
    import os
    import sys

    from data import synthetic

    raw = tmp_path / "raw"
    synthetic.write_dataset(str(raw), num_tiles=2, scenes_per_tile=1, size=(128, 128), seed=5)
    env = {**os.environ, "PYTHON": sys.executable, "CAM_EPOCHS": "1", "IRN_EPOCHS": "1", "SEG_EPOCHS": "1",
           "CROP": "64", "CAM_SCALES": "1.0", "OMP_NUM_THREADS": "1", "SELF_TRAIN_ROUNDS": "1", "CAM_PATCH": "32"}
    out = tmp_path / "out"
    argv = ["bash", str(ROOT / "run_recipe.sh"), "--images", str(raw), "--masks", str(raw), "--patch_size", "64",
            "--test", "^Tile_2__", "--out", str(out), "--device", "cpu"]
    first = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert (out / "report.html").stat().st_size > 0
    for weights in ("cam.pth", "irn.pth", "seg_r0.pth", "seg_r1.pth", "seg.pth"):
        assert (out / "weights" / weights).is_file(), weights
    train = (out / "data" / "lists" / "train.txt").read_text().split()
    test = (out / "data" / "lists" / "test.txt").read_text().split()
    assert train and test and all(n.startswith("Tile_1__") for n in train) and all(n.startswith("Tile_2__") for n in test)
    # CAM_PATCH: the classifier trained on 32² patches of the training scenes only
    cam_train = (out / "data_cam32" / "lists" / "train.txt").read_text().split()
    assert len(cam_train) > len(train) and all(n.startswith("Tile_1__") for n in cam_train)
    assert json.loads((out / "data_cam32" / "classes.json").read_text())["patch_size"] == 32
    relabelled = sorted(p.stem for p in (out / "results" / "relabel_r1").glob("*.png"))
    assert relabelled == sorted(train)
    scores = json.loads((out / "results" / "seg" / "eval_seg.json").read_text())
    assert scores["num_images"] == len(test) and scores["weights"].endswith("seg.pth")
    stamp = (out / "weights" / "seg_r1.pth").stat().st_mtime_ns
    second = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
    assert second.returncode == 0, second.stderr[-3000:]
    assert (out / "weights" / "seg_r1.pth").stat().st_mtime_ns == stamp  # finished training is not redone
