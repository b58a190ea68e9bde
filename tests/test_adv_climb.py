"""AdvCAM: adversarial climbing raises the target logit, the mask restrains strong regions, the pass keeps make_cam's
artifact contract, and the pass count is the algorithm's minimum. Tiny random networks and images, CPU."""
from __future__ import annotations

import argparse
import os

import numpy as np
import pytest
import torch

import obtain_CAM_masking
from data.labels import save_cls_labels
from misc import artifacts
from misc.adv_climb import ClimbStats, adversarial_climb, input_gradients_only, minimum_passes
from misc.io import load_npz, save_jpg, save_json, save_png, save_text_lines
from misc.torchutils import save_checkpoint
from net.cam_net import CAMNet
from step.make_adv_cam import multiscale_adv_cams
from step.make_cam import multiscale_cams, save_cam_artifact


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a small shared CPU, idle OpenMP threads spinning for cores cost more than they save."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def tiny_cam_net(num_classes: int = 2, seed: int = 0, backbone: str = "efficientnet_lite0") -> CAMNet:
    """A random CAMNet whose CAMs peak near 1 on random images (a random backbone's raw scale can be tiny or huge;
    the climb is scale-free, but float32 round-off is not)."""
    torch.manual_seed(seed)
    model = CAMNet(backbone, num_classes=num_classes, pretrained=None).eval()
    with torch.no_grad():
        _, cams = model.forward_with_cams(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed)))
        model.classifier.weight.mul_(1.0 / cams.max().clamp_min(1e-30))
    return model


def random_image(h: int, w: int, low: float = 0.0, high: float = 1.0, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(1, 3, h, w, generator=gen)


def climb(model, image, keys, **kwargs):
    stats = kwargs.pop("stats", None) or ClimbStats()
    with input_gradients_only(model):
        out = adversarial_climb(model, image, torch.tensor(keys), stats=stats, **kwargs)
    return out, stats


def test_climbing_raises_the_target_logit():
    model = tiny_cam_net(num_classes=2)
    _, stats = climb(model, random_image(64, 64), [0, 1], adv_iter=4, ad_coeff=0.0, ad_stepsize=0.08, score_th=0.6)
    logits = torch.stack(stats.target_logits)  # (T + 1, 2k): each copy's own class
    assert logits.shape == (5, 4)
    rises = logits[1:] >= logits[:-1]
    assert rises.float().mean() >= 0.75, logits
    assert (logits[-1] > logits[0]).all(), logits


def test_restricting_mask_holds_strong_regions_near_their_start():
    model = tiny_cam_net(num_classes=1)
    image = random_image(96, 96)
    drift = {}
    for coeff in (0.0, 1000.0):
        _, stats = climb(model, image, [0], adv_iter=3, ad_coeff=coeff, ad_stepsize=0.08, score_th=0.6,
                         stats=ClimbStats(keep_cams=True))
        start, mask = stats.cams[0], stats.masks[0]  # (1, 6, 6) each
        assert 0 < mask.sum() < mask.numel()
        # |CAM - CAM_0| has no gradient at t = 0, so the first step is the same with and without the restriction
        drift[coeff] = [float(((cam - start).abs() * mask).sum()) for cam in stats.cams]
    assert drift[0.0][1] == pytest.approx(drift[1000.0][1], rel=1e-4)
    assert sum(drift[0.0][2:]) > 0
    assert sum(drift[1000.0][2:]) < 0.6 * sum(drift[0.0][2:]), drift


def test_adv_iter_zero_reproduces_make_cam(tmp_path):
    model = tiny_cam_net(num_classes=2)
    image = (random_image(50, 66).permute(0, 2, 3, 1)[0].numpy() * 255).astype(np.uint8)  # odd size: ceil(H/4)
    keys = np.array([0, 1], np.int64)
    scales = (1.0, 0.5)
    with torch.inference_mode():
        plain = multiscale_cams(model, image, scales)
    adv = multiscale_adv_cams(model, image, keys, scales, adv_iter=0, ad_coeff=7, ad_stepsize=0.08, score_th=0.6)
    save_cam_artifact(str(tmp_path / "plain"), "a", keys, *plain)
    save_cam_artifact(str(tmp_path / "adv"), "a", keys, *adv)
    want = load_npz(artifacts.cam_path(str(tmp_path / "plain"), "a"))
    got = load_npz(artifacts.cam_path(str(tmp_path / "adv"), "a"))
    assert got["cam"].shape == (2, 13, 17) and got["high_res"].shape == (2, 50, 66)
    assert want["cam"].max() > 0.99
    assert np.allclose(got["cam"], want["cam"], atol=1e-5)
    assert np.allclose(got["high_res"], want["high_res"], atol=1e-5)
    np.testing.assert_array_equal(got["keys"], want["keys"])


def test_passes_are_the_minimum_and_pixels_stay_in_range():
    model = tiny_cam_net(num_classes=2)
    low, high = 0.3, 0.6
    image = (random_image(32, 32, low, high).permute(0, 2, 3, 1)[0].numpy() * 255).astype(np.uint8)
    low, high = image.min() / 255, image.max() / 255
    seen, backward_calls = [], []
    mean, std = model.mean, model.std

    # count what really reaches the backbone, independently of ClimbStats
    pre = model.backbone.register_forward_pre_hook(lambda m, inp: seen.append((inp[0] * std + mean).detach()))
    back = model.classifier.register_full_backward_hook(lambda m, gin, gout: backward_calls.append(1))
    stats = ClimbStats()
    try:
        with input_gradients_only(model):
            strided, high_res = multiscale_adv_cams(model, image, np.array([0, 1]), (1.0, 0.5), adv_iter=2,
                                                    ad_coeff=7.0, ad_stepsize=3.0, score_th=0.6, stats=stats)
            # no present class: zeros and not a single pass
            empty = multiscale_adv_cams(model, image, np.array([], np.int64), (1.0, 0.5), adv_iter=2, ad_coeff=7.0,
                                        ad_stepsize=0.08, score_th=0.6, stats=stats)
    finally:
        pre.remove()
        back.remove()
    assert (stats.forwards, stats.backwards) == minimum_passes(2, 2, 2) == (6, 4)
    assert (len(seen), len(backward_calls)) == (6, 4)
    assert all(p.grad is None for p in model.parameters())  # gradients w.r.t. the input only
    assert strided.shape == (2, 8, 8) and high_res.shape == (2, 32, 32)
    assert empty[0].shape == (2, 8, 8) and not empty[0].any() and not empty[1].any()
    assert minimum_passes(4, 2, 0) == (0, 0)

    for batch in seen:
        assert batch.min() >= low - 1e-5 and batch.max() <= high + 1e-5
    start, last = seen[0], seen[2]  # scale 1.0: x_0 and x_2 (batch: image, image, flip, flip)
    assert (last - start).abs().max() > 0.05  # the image did move ...
    at_bound = ((last - low).abs() < 1e-5) | ((last - high).abs() < 1e-5)
    assert at_bound.float().mean() > 2 * (((start - low).abs() < 1e-5) | ((start - high).abs() < 1e-5)).float().mean()


def test_resnet50_backbone_climbs():
    model = tiny_cam_net(num_classes=1, backbone="resnet50")
    image = random_image(32, 32)
    plain, _ = climb(model, image, [0], adv_iter=0, ad_coeff=7.0, ad_stepsize=0.08, score_th=0.6)
    adv, stats = climb(model, image, [0], adv_iter=1, ad_coeff=7.0, ad_stepsize=0.08, score_th=0.6)
    assert adv.shape == plain.shape == (1, 2, 2) and (stats.forwards, stats.backwards) == (2, 1)
    assert stats.target_logits[1][0] > stats.target_logits[0][0]
    # x_0's CAM is the first term of the sum; x_1's CAM is the second, and differs from it
    assert not torch.allclose(adv, 2 * plain)


def test_input_gradients_only_restores_requires_grad():
    model = tiny_cam_net(num_classes=1)
    model.classifier.weight.requires_grad_(True)
    frozen_bn = [p for p in model.parameters() if not p.requires_grad]
    with input_gradients_only(model):
        assert not any(p.requires_grad for p in model.parameters())
    assert model.classifier.weight.requires_grad
    assert all(not p.requires_grad for p in frozen_bn)


def write_fixture(root, names_with_building, names_without):
    """A tiny data set: 64x64 JPEGs, masks, classes.json, cls_labels.npy and a list file."""
    rng = np.random.default_rng(0)
    names = names_with_building + names_without
    labels = []
    for name in names:
        mask = np.zeros((64, 64), np.uint8)
        if name in names_with_building:
            mask[16:40, 20:48] = 1
        image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        image[mask == 1] = (200, 180, 160)
        save_jpg(os.path.join(root, artifacts.IMAGE_DIR, f"{name}.jpg"), image)
        save_png(artifacts.mask_path(root, name), mask)
        labels.append([int(mask.any())])
    save_json(artifacts.classes_json_path(root), {"classes": ["background", "building"]})
    save_cls_labels(artifacts.cls_labels_path(root), names, np.array(labels, np.uint8))
    list_path = os.path.join(root, "train.txt")
    save_text_lines(list_path, names)
    return list_path


def test_obtain_cam_masking_pass_contract(tmp_path):
    root = str(tmp_path / "data")
    list_path = write_fixture(root, ["b0", "b1"], ["empty0"])
    weights = str(tmp_path / "cam.pth")
    save_checkpoint(weights, model=tiny_cam_net(num_classes=1), args=argparse.Namespace(backbone="efficientnet_lite0"),
                    step=0, extra={"num_classes": 1})
    out = str(tmp_path / "cam_adv")
    argv = ["--adv_iter", "2", "--AD_coeff", "7", "--AD_stepsize", "0.08", "--score_th", "0.6",
            "--voc12_root", root, "--train_list", list_path, "--cam_weights_name", weights, "--cam_out_dir", out,
            "--cam_scales", "1.0,0.5", "--cam_num_overlays", "1", "--device", "cpu", "--quiet", "True",
            "--log_name", str(tmp_path / "log")]
    assert obtain_CAM_masking.main(argv) == 0

    for name, k in (("b0", 1), ("b1", 1), ("empty0", 0)):
        cam = load_npz(artifacts.cam_path(out, name))
        assert set(cam) == {"keys", "cam", "high_res"}
        assert cam["keys"].dtype == np.int64 and cam["keys"].tolist() == [0] * k
        assert cam["cam"].dtype == np.float32 and cam["cam"].shape == (k, 16, 16)
        assert cam["high_res"].dtype == np.float32 and cam["high_res"].shape == (k, 64, 64)
        if k:
            assert cam["high_res"].max() == pytest.approx(1.0, abs=1e-3) and cam["high_res"].min() >= 0
    assert os.path.isfile(artifacts.args_json_path(out, "make_adv_cam"))
    assert os.path.isfile(artifacts.overlay_path(out, "b0"))
    assert not os.path.exists(artifacts.overlay_path(out, "b1"))

    # a second run skips what exists (the files are not rewritten)
    before = os.stat(artifacts.cam_path(out, "b0")).st_mtime_ns
    assert obtain_CAM_masking.main(argv) == 0
    assert os.stat(artifacts.cam_path(out, "b0")).st_mtime_ns == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    model = tiny_cam_net(num_classes=2)
    image = random_image(64, 64)
    kwargs = dict(adv_iter=2, ad_coeff=7.0, ad_stepsize=0.08, score_th=0.6)
    on_cpu, _ = climb(model, image, [0, 1], **kwargs)
    on_gpu, stats = climb(model.to("cuda"), image.to("cuda"), [0, 1], **kwargs)
    assert on_gpu.device.type == "cuda" and (stats.forwards, stats.backwards) == (3, 2)
    assert torch.allclose(on_gpu.cpu(), on_cpu, rtol=1e-2, atol=1e-3)
