"""Instances from displacement fields, AP@0.5, and the make_ins_seg / eval_ins_seg passes. CPU, 64×64 inputs."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from misc import artifacts
from misc.io import load_npz, load_png, save_npz, save_png
from misc.torchutils import save_checkpoint
from step.eval_ins_seg import average_precision, gt_instances, mask_iou, match_predictions
from step.make_ins_seg_labels import cluster_by_displacement, instances_from_displacement
from tests.test_irn import fixture_args, make_fixture


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # The test box has 2 cores shared by several jobs: intra-op threads on these tiny tensors gain nothing, while
    # oversubscription makes each call 10-30x slower. Restored afterwards so other modules keep their setting.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _box(shape, y0, y1, x0, x1):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_ap50_worked_by_hand():
    # two ground-truth buildings of 10×10 = 100 px; three predictions inside them:
    #   A score 0.9, 8×10 in G1 → IoU 0.8 (TP);  B score 0.8, 3×10 in G2 → IoU 0.3 (FP);  C score 0.7, 6×10 in G2 → 0.6 (TP)
    shape = (30, 40)
    gts = np.stack([_box(shape, 0, 10, 0, 10), _box(shape, 15, 25, 20, 30)])
    preds = np.stack([_box(shape, 0, 8, 0, 10), _box(shape, 15, 18, 20, 30), _box(shape, 15, 21, 20, 30)])
    scores = np.array([0.9, 0.8, 0.7])
    iou = mask_iou(preds, gts, np.ones(shape, bool))
    np.testing.assert_allclose(iou, [[0.8, 0.0], [0.0, 0.3], [0.0, 0.6]])
    tp = match_predictions(iou, scores, 0.5)
    assert tp.tolist() == [True, False, True]
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 → envelope 1 on (0, 1/2], 2/3 on (1/2, 1] → AP = 1/2 + 1/3
    assert average_precision(scores, tp, num_gt=2) == pytest.approx(0.5 + 1 / 3)
    # ranking the false positive first: precision 0, 1/2, 2/3 at recall 0, 1/2, 1 → envelope 2/3 everywhere
    assert average_precision(np.array([0.5, 0.8, 0.7]), tp, num_gt=2) == pytest.approx(2 / 3)


def test_ap_edge_cases_and_duplicates():
    assert np.isnan(average_precision(np.array([]), np.array([], bool), num_gt=0))
    assert average_precision(np.array([]), np.array([], bool), num_gt=3) == 0.0
    # two predictions on one building: the higher-scoring one takes it, the other is a false positive
    iou = np.array([[0.9], [0.95]])
    assert match_predictions(iou, np.array([0.6, 0.4]), 0.5).tolist() == [True, False]
    # ignore pixels leave the IoU: the prediction spills only into ignored pixels → IoU 1
    valid = ~_box((8, 8), 0, 8, 4, 8)
    assert mask_iou(_box((8, 8), 0, 4, 0, 8)[None], _box((8, 8), 0, 4, 0, 4)[None], valid)[0, 0] == 1.0


def test_gt_instances_are_8_connected_components():
    gt = np.zeros((10, 10), np.uint8)
    gt[0:3, 0:3] = 1
    gt[3:5, 3:5] = 1  # touches the first square only at a corner: same instance
    gt[7:9, 7:9] = 1
    gt[0, 9] = 255
    inst = gt_instances(gt, 1)
    assert inst.shape == (2, 10, 10) and inst.dtype == bool
    assert sorted(int(m.sum()) for m in inst) == [4, 13]


def _two_centre_field(h=16, w=16):
    """Two 8-wide halves of a 16×16 grid that touch; the field points each half to its own centre."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    centres = np.where(xx < 8, 3.5, 11.5)  # x of each half's centre
    displacement = np.stack([7.5 - yy, centres - xx])  # (2, h, w) (dy, dx)
    return displacement


def test_two_centres_give_two_instances_even_when_the_foreground_touches():
    displacement = _two_centre_field()
    fg = np.zeros((16, 16), bool)
    fg[2:14, 1:15] = True  # one connected blob spanning both halves
    inst = cluster_by_displacement(displacement, fg, steps=3)
    assert inst.max() == 2
    left, right = inst[2:14, 1:8], inst[2:14, 8:15]
    assert len(np.unique(left)) == 1 and len(np.unique(right)) == 1 and left[0, 0] != right[0, 0]
    assert (inst[~fg] == 0).all()

    # full-size pass: the 64×64 mask and CAM-mass scores
    class_map = np.zeros((64, 64), np.uint8)
    class_map[8:56, 4:60] = 1
    cams = np.zeros((1, 64, 64), np.float32)
    cams[0, :, :32] = 1.0  # the left building is the confident one
    cams[0, :, 32:] = 0.5
    out = instances_from_displacement(displacement, class_map, cams, np.array([0]))
    assert out["masks"].shape == (2, 64, 64) and out["masks"].dtype == np.uint8
    assert out["scores"].dtype == np.float32 and out["classes"].dtype == np.int64
    assert out["classes"].tolist() == [1, 1]
    np.testing.assert_array_equal(out["masks"][0], class_map * (np.arange(64) < 32))
    np.testing.assert_array_equal(out["masks"][1], class_map * (np.arange(64) >= 32))
    assert out["scores"].tolist() == [48 * 28 * 1.0, 48 * 28 * 0.5]


def test_no_foreground_gives_no_instances():
    out = instances_from_displacement(np.zeros((2, 4, 4), np.float32), np.zeros((13, 15), np.uint8),
                                      np.zeros((0, 13, 15), np.float32), np.zeros(0, np.int64))
    assert out["masks"].shape == (0, 13, 15) and out["scores"].shape == (0,) and out["classes"].shape == (0,)


def test_make_and_eval_passes_on_the_fixture(tmp_path):
    from net.irn import IRNet
    from step import eval_ins_seg, make_ins_seg_labels

    paths = make_fixture(tmp_path, names=("a", "b"))
    args = fixture_args(paths, tmp_path, "--cam_out_dir", str(tmp_path / "cam"), "--sem_seg_out_dir",
                        str(tmp_path / "sem"), "--ins_seg_out_dir", str(tmp_path / "ins"))
    torch.manual_seed(0)
    save_checkpoint(args.irn_weights_name, model=IRNet(boundary="plain", pretrained=None), args=args, step=0,
                    extra={"kind": "irn", "boundary": "plain", "backbone": "efficientnet_lite0"})
    gt = {n: load_png(artifacts.mask_path(paths["root"], n)) > 0 for n in "ab"}
    for n in "ab":
        high = gt[n][None].astype(np.float32)  # (1, 64, 64)
        save_npz(artifacts.cam_path(args.cam_out_dir, n), keys=np.array([0]), cam=high[:, ::4, ::4], high_res=high)
    save_png(artifacts.sem_seg_path(args.sem_seg_out_dir, "a"), gt["a"].astype(np.uint8))  # "b": CAM threshold

    make_ins_seg_labels.run(args)
    for n in "ab":
        out = load_npz(artifacts.ins_seg_path(args.ins_seg_out_dir, n))
        n_inst = len(out["masks"])
        assert n_inst >= 1 and out["masks"].shape == (n_inst, 64, 64) and out["masks"].dtype == np.uint8
        assert out["scores"].shape == (n_inst,) and out["scores"].dtype == np.float32
        assert out["classes"].dtype == np.int64 and set(out["classes"].tolist()) == {1}
        # every instance lies inside the foreground, and together they cover it (bar dropped tiny fragments)
        union = out["masks"].any(axis=0)
        assert not (union & ~gt[n]).any() and union.sum() >= 0.9 * gt[n].sum()
        assert (out["masks"].sum(axis=0) <= 1).all()  # no pixel in two instances
    assert os.path.isfile(artifacts.overlay_path(args.ins_seg_out_dir, "a"))

    # perfect instances → AP 1; then drop one of image a's two buildings → recall 2/3, AP 2/3
    for n in "ab":
        inst = gt_instances(gt[n].astype(np.uint8), 1).astype(np.uint8)
        save_npz(artifacts.ins_seg_path(args.ins_seg_out_dir, n), masks=inst,
                 scores=np.linspace(1, 0.5, len(inst)).astype(np.float32), classes=np.ones(len(inst), np.int64))
    eval_ins_seg.run(args)
    with open(artifacts.eval_json_path(args.ins_seg_out_dir, "eval_ins_seg")) as f:
        result = json.load(f)
    assert result["ap50"] == {"building": 1.0} and result["map50"] == 1.0
    assert result["num_gt"] == {"building": 3} and result["num_pred"] == {"building": 3}
    kept = load_npz(artifacts.ins_seg_path(args.ins_seg_out_dir, "a"))
    save_npz(artifacts.ins_seg_path(args.ins_seg_out_dir, "a"), masks=kept["masks"][:1], scores=kept["scores"][:1],
             classes=kept["classes"][:1])
    eval_ins_seg.run(args)
    with open(artifacts.eval_json_path(args.ins_seg_out_dir, "eval_ins_seg")) as f:
        assert json.load(f)["ap50"]["building"] == pytest.approx(2 / 3)


def test_mask_iou_with_no_masks_at_all():
    from step.eval_ins_seg import mask_iou

    valid = np.ones((4, 4), bool)
    iou = mask_iou(np.zeros((0, 4, 4), np.uint8), np.zeros((0, 4, 4), bool), valid)
    assert iou.shape == (0, 0)
    assert mask_iou(np.ones((2, 4, 4), np.uint8), np.zeros((0, 4, 4), bool), valid).shape == (2, 0)
