"""AdvCAM: adversarial climbing raises the target logit, the mask restrains strong regions, the pass keeps make_cam's
artifact contract, and the pass count is the algorithm's minimum. Tiny random networks and images, CPU."""
from __future__ import annotations

import argparse
import copy
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
from misc.cam_maps import multiscale_cams, save_cam_artifact


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


# ---------------------------------------------------------------------------------------------------------------------
# The fast engine (closed-form head gradient on misc.engine's input-gradient copy) against the exact one
# ---------------------------------------------------------------------------------------------------------------------


class LinearCAMNet(torch.nn.Module):
    """CAMs that are the image itself: f = x (stride 1, C = 3), raw = W · f, logits = mean(raw); the logits of
    every image the network sees are recorded. Small enough to work the climb out by hand."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.classifier = torch.nn.Conv2d(3, weight.shape[0], 1, bias=False)
        with torch.no_grad():
            self.classifier.weight.copy_(weight[:, :, None, None])
        self.register_buffer("std", torch.ones(1, 3, 1, 1))
        self.num_classes = weight.shape[0]
        self.seen: list[torch.Tensor] = []

    def features(self, x):
        self.seen.append(self.classifier(x.detach()).mean(dim=(2, 3)))
        return [x]

    def forward_with_cams(self, x):
        raw = self.classifier(self.features(x)[-1])
        return raw.mean(dim=(2, 3)), torch.relu(raw)


@pytest.mark.parametrize("closed_form", [False, True])
def test_other_class_term_lowers_the_other_logit_by_hand(closed_form):
    # K = 2, both present. Class 0 reads channel 0, class 1 channel 1, so for the copy climbing class 0
    # dJ/dx = (W_0 - W_1) / (H·W) = (+1, -1, 0) / 16 at every pixel: one step of 0.1 (std = 1, max-normalised)
    # adds 0.1 to channel 0 and takes 0.1 from channel 1, clamped to the image's range [0.1, 0.9].
    model = LinearCAMNet(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    image = torch.empty(1, 3, 4, 4)
    image[0, 0], image[0, 1], image[0, 2] = 0.3, 0.7, 0.5
    image[0, 0, 0, 0], image[0, 1, 0, 0] = 0.9, 0.1  # the range's ends: they cannot move further
    with input_gradients_only(model):
        adversarial_climb(model, image, torch.tensor([0, 1]), adv_iter=1, ad_coeff=7.0, ad_stepsize=0.1,
                          score_th=0.6, closed_form=closed_form)
    start, end = model.seen  # (2k, K) each; copies: image→0, image→1, flip→0, flip→1
    # climbing 0: logit_0 = mean(channel 0): (15·0.3 + 0.9)/16 → (15·0.4 + 0.9)/16 (0.9 is clamped at the top),
    # logit_1: (15·0.7 + 0.1)/16 → (15·0.6 + 0.1)/16 (0.1 at the bottom)
    assert start[0].tolist() == pytest.approx([5.4 / 16, 10.6 / 16])
    assert end[0].tolist() == pytest.approx([6.9 / 16, 9.1 / 16])  # climbing 0 lowers the other class's logit
    # climbing 1: the range's ends move inwards too (0.9 → 0.8, 0.1 → 0.2)
    assert end[1].tolist() == pytest.approx([(15 * 0.2 + 0.8) / 16, (15 * 0.8 + 0.2) / 16])
    assert torch.allclose(end[2:], end[:2])  # the flipped copies climb the same way


def test_closed_form_feature_gradient_equals_autograd():
    from misc.adv_climb import objective_feature_gradient

    gen = torch.Generator().manual_seed(0)
    k, num_classes, channels, h, w = 2, 3, 5, 6, 7
    weight = torch.randn(num_classes, channels, generator=gen)
    targets = torch.tensor([2, 0, 2, 0])  # copies: image→2, image→0, flip→2, flip→0
    feats = torch.randn(2 * k, channels, h, w, generator=gen).requires_grad_(True)
    init = torch.rand(k, h, w, generator=gen) * 3
    mask = torch.rand(k, h, w, generator=gen) > 0.5
    ad_coeff = 7.0
    # the exact path's objective, through autograd
    raw = torch.einsum("kc,bchw->bkhw", weight, feats)
    logits, cams = raw.mean(dim=(2, 3)), torch.relu(raw)
    rows = torch.arange(2 * k)
    target_cam = cams[rows, targets]
    merged = target_cam[:k] + target_cam[k:].flip(-1)
    objective = 2 * logits[rows, targets].sum() - logits.sum() - ad_coeff * ((merged - init).abs() * mask).sum()
    (want,) = torch.autograd.grad(objective, feats)
    local = torch.sign(merged.detach() - init) * mask
    got = objective_feature_gradient(weight, feats.detach(), raw.detach(), targets,
                                     torch.cat([local, local.flip(-1)]), ad_coeff)
    assert mask.any() and (raw > 0).any() and (raw < 0).any()
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    # without the restriction (t = 0) only the logit part is left: the same at every pixel
    uniform = objective_feature_gradient(weight, feats.detach(), raw.detach(), targets, None, ad_coeff)
    assert torch.allclose(uniform, uniform[:, :, :1, :1].expand_as(uniform))


@pytest.mark.parametrize("backbone, dtype", [("efficientnet_lite0", torch.float32), ("resnet50", torch.float64)])
def test_input_gradient_network_matches_the_model(backbone, dtype):
    # float64 checks the algebra (BN folding, the flipped-kernel and matmul backwards, the 1-byte ReLU masks) to
    # round-off; float32 checks the fast kernels. (A random ResNet is too ill-conditioned for a float32 check: BN
    # folding's 1e-7 round-off flips a few ReLUs near 0 in layer3 and moves its input gradient by ~1 %.)
    from misc.engine import input_gradient_network

    model = tiny_cam_net(num_classes=2, backbone=backbone).to(dtype)
    fast = input_gradient_network(model, torch.rand(1, 3, 32, 32, dtype=dtype))
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in fast.modules())
    assert any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())  # original untouched
    image = random_image(32, 24).to(dtype)
    outs = []
    for net in (model, fast):
        x = image.clone().requires_grad_(True)
        with input_gradients_only(net):
            logits, cams = net.forward_with_cams(x)
            (grad,) = torch.autograd.grad(logits.sum() + cams.sum(), x)
        outs.append((logits, cams, grad))
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    for want, got in zip(*outs):
        assert want.abs().max() > 0
        assert (got - want).abs().max() <= tol * want.abs().max()


def test_fast_engine_matches_exact():
    model = tiny_cam_net(num_classes=2)
    image = (random_image(32, 32).permute(0, 2, 3, 1)[0].numpy() * 255).astype(np.uint8)
    keys = np.array([0, 1])
    out = {}
    for coeff in (0.0, 7.0):
        for engine in ("exact", "fast"):
            stats = ClimbStats()
            with input_gradients_only(model):
                _, high = multiscale_adv_cams(model, image, keys, (1.0, 0.5, 1.0), adv_iter=2, ad_coeff=coeff,
                                              ad_stepsize=0.08, score_th=0.6, stats=stats, engine=engine)
            # scale 1.0 twice: climbed once; 2 sizes × (3 forwards, 2 backwards)
            assert (stats.forwards, stats.backwards) == (6, 4)
            out[coeff, engine] = high / high.flatten(1).amax(1)[:, None, None]
        assert (out[coeff, "fast"] - out[coeff, "exact"]).abs().max() < 1e-3
    assert (out[0.0, "exact"] - out[7.0, "exact"]).abs().max() > 1e-2  # the restriction did change the CAMs
