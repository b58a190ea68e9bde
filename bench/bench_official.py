"""Side by side with the official IRN and AdvCAM code: make_cam, AdvCAM and the random walk, same weights, same images.

    python bench/bench_official.py --official_irn /path/to/irn --official_advcam /path/to/AdvCAM
    python bench/bench_official.py --official_irn ... --official_advcam ... --sizes 256 --num_images 1 --repeats 1

The two official repositories are *not* part of this project: give the paths of your own checkouts of
github.com/jiwoon-ahn/irn and github.com/jbeomlee93/AdvCAM. Their modules are imported from there, in separate
processes whose ``sys.path`` does not hold this repository (both have top-level ``misc``/``net``/``step`` packages),
and patched at run time for a CPU-only PyTorch. Nothing of theirs is copied here.

What is measured (each a fresh subprocess, one torch thread, interleaved ours, official, ours, official ...):

* make_cam: ours ``misc.cam_maps.multiscale_cams`` on ``net.cam_net.CAMNet`` against IRN's ``step/make_cam.py``
  ``_work`` (its ``net/resnet50_cam.py``), scales --cam_scales, image + flip.
* advcam: ours ``step.make_adv_cam.multiscale_adv_cams`` (--adv_engine, default fast) against AdvCAM's
  ``obtain_CAM_masking.py`` ``_work`` (its ``net/resnet50_cam.py`` and ``gradCAM.py``), the seed's settings.
* walk: ours ``misc.random_walk.random_walk`` against IRN's ``misc/indexing.propagate_to_edge`` on the *same*
  stride-4 CAMs (ours, make_cam) and the *same* boundary map (one IRN ``EdgeDisplacement`` forward of the official
  network with random head weights, computed once), so the difference is the walk alone. IRN's walk builds a dense
  (hw)² transition matrix and squares it exp_times times: at 512² (128² map) that is 8 products of 16384² matrices,
  ~70 TFLOP; --official_walk_max_side (default 256) skips the official walk above that side (reported as not run).

Per run: wall s/image, CPU s/image (user + system of the worker; the steadier figure on a shared machine), the
worker's peak RSS (``ru_maxrss``, including the imports and the untimed warm-up on a 64² crop), and the load average.

Same weights: a ResNet-50 with a fixed seed (this project's backbone with random He init and randomised BatchNorm
statistics) saved once as a torchvision-keyed state dict (``fc.*`` included, which IRN's loader pops); ours loads it
with ``pretrained=<file>``, the official nets through their own ``resnet50(pretrained=True)`` with
``torch.utils.model_zoo.load_url`` returning that file. The CAM head is one seeded (K, 2048, 1, 1) tensor put into
both (default K = 1 foreground class, Dubai building-only; the official ``classifier`` is replaced by a bias-free
Conv2d(2048, K, 1) holding it, because their nets hard-code 20 VOC classes).

Same images: --num_images patches of --image_list from --image_dir (real 256² Dubai patches); for a larger --sizes
entry each patch is resized with PIL bicubic (512²: the same scene at twice the pixels).

CPU patches applied to the official code, at run time, in its worker processes only:
  1. ``torch.Tensor.cuda`` and ``torch.nn.Module.cuda`` return ``self`` (every ``.cuda()`` call).
  2. ``torch.cuda.device`` is a no-op context manager (``with cuda.device(process_id)``).
  3. ``torch.cuda.device_count`` returns 1 (they divide num_workers by it and split the dataset by it).
  4. ``torch.utils.model_zoo.load_url`` returns the shared weights file (their ``resnet50(pretrained=True)``).
  5. ``_work`` is called directly (process_id 0, num_workers 0) instead of through ``multiprocessing.spawn``, with a
     list of items that mirror ``voc12.dataloader.VOC12ClassificationDatasetMSF.__getitem__`` (their
     ``TorchvisionNormalize`` and ``imutils.HWC_to_CHW``, image + flip per scale) instead of reading VOC lists.
     --official_resize bilinear (default) resizes each scale as ours does (torch bilinear, no antialias) instead of
     their ``imutils.pil_rescale(order=3)`` (PIL bicubic); ``pil`` uses theirs.
  6. IRN's make_cam prints progress every ``len(databin) // 20`` items, a division by zero below 20 items: its
     ``_work`` runs with ``torch.cuda.device_count`` patched to 2 so that ``process_id == n_gpus - 1`` is false and
     the print is skipped (the count is used for nothing else there).
  7. obtain_CAM_masking.py parses ``sys.argv`` at import: it is imported with ``sys.argv`` set to the seed's settings
     (--adv_iter, --AD_coeff, --AD_stepsize, --score_th, --cam_out_dir <tmp>, --num_workers 0).
  8. The classifier head replacement above (K classes instead of 20).
Nothing else of theirs is changed for the timed runs: not torchvision (neither repository imports it), not their
algorithms. ``pydensecrf`` (imported by their misc/imutils.py) comes from the ``pydensecrf2`` package; AdvCAM also
imports cv2 and scipy, both installed here.

The CAM difference: max |ours − official| over the max-normalised high-resolution CAMs (the artifact's
``high_res``), and the share of pixels whose label (CAM > --label_threshold) agrees. "raw" compares the timed runs.
"mapped" maps the departures documented in BENCHMARKS/README, in a further pair of untimed runs:
  * both: ours dilates layer4 (stride 1, dilation 2, as torchvision's ``replace_stride_with_dilation``) where IRN's
    ResNet-50 uses stride 1 without dilation: the official net's layer4 3×3 convs get dilation 2 (padding 2).
  * advcam, official side: ``GradCAM.generate`` returns the plain CAM relu(W_c · f) instead of Grad-CAM (needs K = 1).
  * advcam, ours side: ``grow_mask=False`` (the official mask is rebuilt from the current iterate) and the
    accumulated maps drop the last iterate x_T (the official code accumulates x_0 .. x_{T-1}).
  Not mapped (the residual): the official climbing logit is mean(relu(W_c · f)), ours mean(W_c · f); the official
  clamps to the current iterate's [min, max] in normalised units (one scalar range over the channels), ours to the
  original image's [min, max] in [0, 1] units.
For the walk, max |difference| of the max-normalised walked maps (stride 4) and label agreement at
--walk_bg_threshold (IRN's sem_seg_bg_thres).

Prints one JSON line per run, then a summary JSON line and a markdown table.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PASSES = ("make_cam", "advcam", "walk")


# ---------------------------------------------------------------------------------------------------------------------
# pure helpers (tests/test_bench_official.py)

def torchvision_state_dict(backbone_state: dict, fc_weight, fc_bias) -> dict:
    """Our ResNet-50 backbone's state dict as a torchvision ``resnet50`` file: the same keys plus ``fc.*``.

    Our backbone already uses torchvision's names (``conv1``, ``layer1.0.downsample.1.running_var`` ...); IRN's
    loader pops ``fc.weight`` and ``fc.bias`` before loading, so they must be present. BatchNorm's
    ``num_batches_tracked`` is kept (torchvision files have it; IRN loads with strict=True in net/resnet50.py).
    """
    out = {k: v for k, v in backbone_state.items() if not k.startswith("fc.")}
    out["fc.weight"], out["fc.bias"] = fc_weight, fc_bias
    return out


def drop_last_iterate(cams_per_forward: list, adv_iter: int) -> list:
    """Per climbed scale, the sum of the flip-merged CAMs of x_0 .. x_{T-1} (the official accumulation).

    cams_per_forward: ``ClimbStats.cams`` of one image: (T + 1) entries (k, h_s, w_s) per scale, scale after scale.
    Returns one (k, h_s, w_s) sum per scale.
    """
    per_scale = adv_iter + 1
    if adv_iter < 1 or len(cams_per_forward) % per_scale:
        raise ValueError(f"{len(cams_per_forward)} CAMs is not a whole number of climbs of {per_scale} forwards")
    return [sum(cams_per_forward[i:i + adv_iter]) for i in range(0, len(cams_per_forward), per_scale)]


def cam_difference(ours: np.ndarray, official: np.ndarray, threshold: float) -> dict:
    """Max |difference| of two max-normalised CAM stacks (k, H, W) and the share of pixels labelled alike
    (foreground where the map exceeds ``threshold``)."""
    if ours.shape != official.shape:
        raise ValueError(f"shapes differ: {ours.shape} vs {official.shape}")
    return {"max_abs_diff": float(np.abs(ours - official).max()),
            "label_agreement": float(((ours > threshold) == (official > threshold)).mean())}


def max_normalised(maps: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """(k, H, W) maps divided by their own maximum (+ eps), as make_cam/make_sem_seg normalise."""
    return maps / (maps.reshape(len(maps), -1).max(axis=1)[:, None, None] + eps)


# ---------------------------------------------------------------------------------------------------------------------
# worker side

def _usage() -> tuple[float, float]:
    """(CPU seconds user + system, peak RSS MiB) of this process."""
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime, u.ru_maxrss / 1024


def _patch_official_for_cpu(weights_path: str) -> None:
    """Patches 1 – 4 of the module docstring."""
    import torch
    import torch.utils.model_zoo

    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.cuda.device = lambda *a, **k: contextlib.nullcontext()
    torch.cuda.device_count = lambda: 1
    torch.utils.model_zoo.load_url = lambda *a, **k: torch.load(weights_path, map_location="cpu", weights_only=True)


def _official_items(images: dict, scales, resize: str, label_count: int) -> list[dict]:
    """Items as VOC12ClassificationDatasetMSF.__getitem__ returns them (patch 5), built with the official helpers."""
    import torch
    import torch.nn.functional as F
    import voc12.dataloader
    from misc import imutils

    normalize = voc12.dataloader.TorchvisionNormalize()
    items = []
    for name, img in images.items():
        ms = []
        for s in scales:
            if s == 1:
                s_img = img
            elif resize == "pil":
                s_img = imutils.pil_rescale(img, s, order=3)
            else:  # as ours: bilinear on the float image, no antialias (values stay in 0..255, normalize divides)
                size = (max(1, round(img.shape[0] * s)), max(1, round(img.shape[1] * s)))
                x = torch.from_numpy(img).permute(2, 0, 1).float()[None]
                s_img = F.interpolate(x, size=size, mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
            s_img = imutils.HWC_to_CHW(normalize(s_img))
            ms.append(np.stack([s_img, np.flip(s_img, -1)], axis=0).copy())
        label = torch.zeros(label_count)
        label[0] = 1  # the first class present (the bench's images all count as containing it)
        items.append({"name": name, "img": ms, "size": (img.shape[0], img.shape[1]), "label": label})
    return items


def _official_cam_net(module: str, head, mapped: bool):
    import importlib

    import torch

    net = getattr(importlib.import_module(module), "CAM")()
    net.classifier = torch.nn.Conv2d(head.shape[1], head.shape[0], 1, bias=False)  # patch 8
    with torch.no_grad():
        net.classifier.weight.copy_(head)
    if mapped:  # our layer4: dilation 2 in the blocks after the first
        for block in list(net.resnet50.layer4)[1:]:
            block.conv2.dilation, block.conv2.padding = (2, 2), (2, 2)
    net.eval()  # their Net.train() returns None
    return net


def _ours_cam_net(weights: str, head):
    import torch

    sys.path.insert(0, REPO)
    from net.cam_net import CAMNet

    net = CAMNet("resnet50", num_classes=head.shape[0], pretrained=weights)
    with torch.no_grad():
        net.classifier.weight.copy_(head)
    return net.eval()


def _load_inputs(work: str, size: int, count: int) -> dict:
    data = np.load(os.path.join(work, f"images_{size}.npz"))
    return {k: data[k] for k in sorted(data.files)[:count]}


def worker(spec: dict) -> dict:
    """One run: {impl: ours|official, pass, size, images, mapped, ...}. Writes its CAMs to spec['out'] (npz)."""
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    work, impl, name = spec["work"], spec["impl"], spec["pass"]
    head = torch.load(os.path.join(work, "head.pt"), weights_only=True)
    weights = os.path.join(work, "resnet50_torchvision.pth")
    images = _load_inputs(work, spec["size"], spec["images"])
    warm = {"warm": next(iter(images.values()))[:64, :64].copy()}
    scales = tuple(spec["cam_scales"])
    saved = {}
    if impl == "ours":
        sys.path.insert(0, REPO)
        from misc.torchutils import tune_cpu_allocator

        tune_cpu_allocator(torch.device("cpu"))  # as run_sample.py does on the CPU
    else:
        _patch_official_for_cpu(weights)
        sys.path.insert(0, spec["official_irn"] if name in ("make_cam", "walk") else spec["official_advcam"])

    if name == "walk":
        data = np.load(os.path.join(work, f"walk_{spec['size']}.npz"))
        cams, edge = torch.from_numpy(data["cams"]), torch.from_numpy(data["edge"])  # (k, h, w), (1, h, w)
        if impl == "ours":
            from misc.random_walk import random_walk

            run = lambda: random_walk(cams, edge[0], beta=spec["beta"], exp_times=spec["exp_times"],  # noqa: E731
                                      radius=spec["radius"], threads=spec["threads"])
        else:
            from misc import indexing

            run = lambda: indexing.propagate_to_edge(cams, edge, beta=spec["beta"],  # noqa: E731
                                                     exp_times=spec["exp_times"], radius=spec["radius"])
        with torch.no_grad():
            _, base_rss = _usage()
            start, cpu0 = time.perf_counter(), _usage()[0]
            walked = run()
            wall, cpu = time.perf_counter() - start, _usage()[0] - cpu0
        saved["walked"] = walked.reshape(cams.shape).numpy()
        count = 1
    elif impl == "ours":
        from misc.adv_climb import ClimbStats, climb_network, input_gradients_only
        from misc.cam_maps import multiscale_cams
        from step.make_adv_cam import multiscale_adv_cams

        model = _ours_cam_net(weights, head)
        keys = np.array([0], dtype=np.int64)
        climb = dict(adv_iter=spec["adv_iter"], ad_coeff=spec["AD_coeff"], ad_stepsize=spec["AD_stepsize"],
                     score_th=spec["score_th"])
        if name == "advcam":
            model = climb_network(model, spec["engine"])  # built once, as make_adv_cam does

        def one(image):
            if name == "make_cam":
                with torch.inference_mode():
                    return multiscale_cams(model, image, scales)[1]
            if not spec["mapped"]:
                with input_gradients_only(model):
                    return multiscale_adv_cams(model, image, keys, scales, engine=spec["engine"], **climb)[1]
            # mapped: the official mask (current iterate only) and accumulation (x_0 .. x_{T-1})
            import torch.nn.functional as F

            stats = ClimbStats(keep_cams=True)
            with input_gradients_only(model):
                multiscale_adv_cams(model, image, keys, scales, engine=spec["engine"], grow_mask=False, stats=stats,
                                    **climb)
            sums = drop_last_iterate(stats.cams, spec["adv_iter"])
            hw = image.shape[:2]
            return sum(F.interpolate(s[None].float(), size=hw, mode="bilinear", align_corners=False)[0]
                       for s in sums)

        one(warm["warm"])  # untimed: allocator, kernels, first calls
        _, base_rss = _usage()
        start, cpu0 = time.perf_counter(), _usage()[0]
        for key, image in images.items():
            high = one(image)
            saved[key] = max_normalised(high.detach().cpu().numpy())
        wall, cpu = time.perf_counter() - start, _usage()[0] - cpu0
        count = len(images)
    else:
        items = _official_items(images, scales, spec["official_resize"], head.shape[0])
        warm_items = _official_items(warm, scales, spec["official_resize"], head.shape[0])
        out_dir = tempfile.mkdtemp(prefix=f"official_{name}_")
        if name == "make_cam":
            from step import make_cam as official

            model = _official_cam_net("net.resnet50_cam", head, spec["mapped"])
            work_fn = official._work
        else:
            sys.argv = ["obtain_CAM_masking.py", "--adv_iter", str(spec["adv_iter"]),  # patch 7
                        "--AD_coeff", str(int(spec["AD_coeff"])), "--AD_stepsize", str(spec["AD_stepsize"]),
                        "--score_th", str(spec["score_th"]), "--cam_out_dir", out_dir, "--num_workers", "0"]
            import obtain_CAM_masking as official

            torch.set_num_threads(spec["threads"])  # it sets 1 at import; keep the bench's setting
            model = _official_cam_net("net.resnet50_cam", head, spec["mapped"])
            if spec["mapped"]:
                import gradCAM
                import torch.nn.functional as F

                def plain_cam(self, target_layer):  # relu(W · f), with the graph to f, instead of Grad-CAM
                    return F.relu(F.conv2d(self._find(self.fmap_pool, target_layer), self.model.classifier.weight))

                gradCAM.GradCAM.generate = plain_cam
            work_fn = official._work
        args = argparse.Namespace(num_workers=0, cam_out_dir=out_dir)
        if name == "make_cam":
            torch.cuda.device_count = lambda: 2  # patch 6: skip the progress print
        work_fn(0, model, [warm_items], args if name == "make_cam" else official.args)
        _, base_rss = _usage()
        start, cpu0 = time.perf_counter(), _usage()[0]
        work_fn(0, model, [items], args if name == "make_cam" else official.args)
        wall, cpu = time.perf_counter() - start, _usage()[0] - cpu0
        for key in images:
            # the official make_cam / AdvCAM write a pickled dict per image (their format, read here only)
            saved[key] = np.load(os.path.join(out_dir, key + ".npy"), allow_pickle=True).item()["high_res"]
        count = len(images)
    np.savez(spec["out"], **saved)
    _, peak = _usage()
    return {"impl": impl, "pass": name, "size": spec["size"], "images": count, "mapped": spec["mapped"],
            "s_per_image": round(wall / count, 3), "cpu_s_per_image": round(cpu / count, 3),
            "peak_rss_mib": round(peak, 1), "rss_before_timed_mib": round(base_rss, 1),
            "threads": torch.get_num_threads(), "load_avg": [round(v, 2) for v in os.getloadavg()]}


def prepare(spec: dict) -> dict:
    """Weights, head, images per size and the walk's inputs (ours: CAMs; official IRN: boundary map)."""
    import torch
    from PIL import Image

    work, seed = spec["work"], spec["seed"]
    if spec["stage"] == "ours":
        sys.path.insert(0, REPO)
        from misc.cam_maps import multiscale_cams
        from net.backbones import build_backbone

        torch.manual_seed(seed)
        backbone = build_backbone("resnet50", pretrained=None, freeze_bn=True)
        gen = torch.Generator().manual_seed(seed + 1)
        state = backbone.state_dict()
        for key, value in state.items():  # random BN statistics, so that a mis-mapped BN key would show
            if key.endswith(("running_mean", "bias")) and value.dtype.is_floating_point:
                value.copy_(0.05 * torch.randn(value.shape, generator=gen))
            elif key.endswith("running_var"):
                value.copy_(1 + 0.2 * torch.rand(value.shape, generator=gen))
            elif key.endswith("weight") and value.dim() == 1:
                value.copy_(1 + 0.1 * torch.randn(value.shape, generator=gen))
        fc_w, fc_b = 0.01 * torch.randn(1000, 2048, generator=gen), torch.zeros(1000)
        torch.save(torchvision_state_dict(state, fc_w, fc_b), os.path.join(work, "resnet50_torchvision.pth"))
        head = torch.empty(spec["num_classes"], 2048, 1, 1)
        torch.nn.init.xavier_uniform_(head, generator=gen)
        torch.save(head, os.path.join(work, "head.pt"))
        with open(spec["image_list"]) as f:
            names = [line.split()[0] for line in f if line.strip()][:max(spec["num_images"])]
        base = {n: np.asarray(Image.open(os.path.join(spec["image_dir"], n + ".jpg")).convert("RGB")) for n in names}
        model = _ours_cam_net(os.path.join(work, "resnet50_torchvision.pth"), head)
        for size, count in zip(spec["sizes"], spec["num_images"]):
            imgs = {}
            for n in names[:count]:
                img = base[n]
                if img.shape[:2] != (size, size):
                    img = np.asarray(Image.fromarray(img).resize((size, size), Image.BICUBIC))
                imgs[n] = img
            np.savez(os.path.join(work, f"images_{size}.npz"), **imgs)
            first = imgs[names[0]]
            with torch.inference_mode():
                strided, _ = multiscale_cams(model, first, tuple(spec["cam_scales"]))
            cams = max_normalised(strided.numpy())
            np.save(os.path.join(work, f"walk_cams_{size}.npy"), cams.astype(np.float32))
        return {"prepared": "ours", "images": names}
    # official IRN's EdgeDisplacement with the shared backbone weights and a seeded random edge head
    _patch_official_for_cpu(os.path.join(work, "resnet50_torchvision.pth"))
    sys.path.insert(0, spec["official_irn"])
    from net import resnet50_irn
    from voc12.dataloader import TorchvisionNormalize
    from misc import imutils

    for size in spec["sizes"]:
        torch.manual_seed(seed + 2)
        net = resnet50_irn.EdgeDisplacement(crop_size=-(-size // 16) * 16)
        net.eval()  # their Net.train() returns None (and only freezes conv1/bn1; FixedBatchNorm is eval anyway)
        img = next(iter(np.load(os.path.join(work, f"images_{size}.npz")).values()))
        x = imutils.HWC_to_CHW(TorchvisionNormalize()(img))
        x = torch.from_numpy(np.stack([x, np.flip(x, -1)]).copy())
        with torch.no_grad():
            edge, _ = net(x)  # (1, h, w)
        cams = np.load(os.path.join(work, f"walk_cams_{size}.npy"))
        np.savez(os.path.join(work, f"walk_{size}.npz"), cams=cams, edge=edge.numpy().astype(np.float32))
    return {"prepared": "edge"}


# ---------------------------------------------------------------------------------------------------------------------
# driver

def _subprocess(payload: dict) -> dict:
    """Run one worker; official ones run in their checkout's folder, as their scripts expect (their
    voc12/dataloader.py reads ``voc12/cls_labels.npy`` relative to the working directory at import)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", json.dumps(payload)]
    official = payload.get("impl") == "official" or payload.get("stage") == "edge"
    cwd = (payload["official_advcam"] if payload.get("pass") == "advcam" else payload["official_irn"]) if official \
        else None
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        raise RuntimeError(f"worker failed ({payload.get('impl', payload.get('stage'))} "
                           f"{payload.get('pass', '')} {payload.get('size', '')}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def csv_list(kind):
    return lambda value: tuple(kind(v) for v in value.split(",") if v.strip())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See the module docstring for patches.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--official_irn", help="a checkout of github.com/jiwoon-ahn/irn")
    p.add_argument("--official_advcam", help="a checkout of github.com/jbeomlee93/AdvCAM")
    p.add_argument("--passes", type=csv_list(str), default=PASSES, help="of make_cam, advcam, walk")
    p.add_argument("--sizes", type=csv_list(int), default=(256, 512), help="square image sides")
    p.add_argument("--num_images", type=csv_list(int), default=(2, 1), help="timed images per size")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per implementation, interleaved")
    p.add_argument("--mapped_sizes", type=csv_list(int), default=(256,),
                   help="sizes of the untimed mapped runs (make_cam, advcam), on the first image only")
    p.add_argument("--image_dir", default=os.path.join(REPO, "Dataset/dubai/JPEGImages"))
    p.add_argument("--image_list", default=os.path.join(REPO, "Dataset/dubai/lists/train.txt"))
    p.add_argument("--num_classes", type=int, default=1, help="K of the shared CAM head")
    p.add_argument("--cam_scales", type=csv_list(float), default=(1.0, 0.5, 1.5, 2.0))
    p.add_argument("--adv_iter", type=int, default=2)
    p.add_argument("--AD_coeff", type=float, default=7.0)
    p.add_argument("--AD_stepsize", type=float, default=0.08)
    p.add_argument("--score_th", type=float, default=0.6)
    p.add_argument("--adv_engine", default="fast", choices=("exact", "fast"), help="ours")
    p.add_argument("--beta", type=float, default=10.0)
    p.add_argument("--exp_times", type=int, default=8)
    p.add_argument("--radius", type=int, default=5)
    p.add_argument("--official_walk_max_side", type=int, default=256,
                   help="skip IRN's dense walk on larger images (its cost grows with the pixels cubed)")
    p.add_argument("--official_resize", default="bilinear", choices=("bilinear", "pil"),
                   help="how the official items' scales are resized (patch 5)")
    p.add_argument("--label_threshold", type=float, default=0.15, help="CAM label agreement (IRN cam_eval_thres)")
    p.add_argument("--walk_bg_threshold", type=float, default=0.25, help="walk label agreement (IRN sem_seg_bg_thres)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work_dir", default=None, help="keep the inputs and outputs here (default: a temp folder)")
    p.add_argument("--reuse_inputs", action="store_true", help="keep the weights/images already in --work_dir")
    p.add_argument("--summary_only", action="store_true",
                   help="only summarise the runs already in --work_dir/runs.jsonl (e.g. of an interrupted run)")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args._worker:
        spec = json.loads(args._worker)
        print(json.dumps(prepare(spec) if "stage" in spec else worker(spec)), flush=True)
        return 0
    if not args.summary_only and not (args.official_irn and args.official_advcam):
        build_parser().error("--official_irn and --official_advcam (paths of your checkouts) are required")
    if len(args.num_images) != len(args.sizes):
        build_parser().error("--num_images needs one count per --sizes entry")
    if any(p not in PASSES for p in args.passes):
        build_parser().error(f"--passes: of {PASSES}")
    work = os.path.abspath(args.work_dir or tempfile.mkdtemp(prefix="bench_official_"))
    os.makedirs(work, exist_ok=True)
    log_path = os.path.join(work, "runs.jsonl")
    if args.summary_only:
        with open(log_path) as f:
            runs = [json.loads(line) for line in f if line.strip()]
        print(json.dumps(summarise(args, runs)), flush=True)
        print_table(summarise(args, runs))
        return 0
    common = {"work": work, "seed": args.seed, "threads": args.threads, "cam_scales": list(args.cam_scales),
              "official_irn": os.path.abspath(args.official_irn),
              "official_advcam": os.path.abspath(args.official_advcam)}
    if not (args.reuse_inputs and os.path.exists(os.path.join(work, "head.pt"))):
        _subprocess({**common, "stage": "ours", "sizes": list(args.sizes), "num_images": list(args.num_images),
                     "num_classes": args.num_classes, "image_dir": args.image_dir, "image_list": args.image_list})
    walk_ready = os.path.exists(os.path.join(work, f"walk_{args.sizes[-1]}.npz"))
    if "walk" in args.passes and not (args.reuse_inputs and walk_ready):
        _subprocess({**common, "stage": "edge", "sizes": list(args.sizes)})
    spec0 = {**common, "adv_iter": args.adv_iter, "AD_coeff": args.AD_coeff, "AD_stepsize": args.AD_stepsize,
             "score_th": args.score_th, "engine": args.adv_engine, "beta": args.beta, "exp_times": args.exp_times,
             "radius": args.radius, "official_resize": args.official_resize}
    runs = []
    open(log_path, "w").close()

    def run(impl, name, size, images, mapped, repeat):
        if impl == "official" and name == "walk" and size > args.official_walk_max_side:
            return
        out = os.path.join(work, f"{impl}_{name}_{size}_{'mapped' if mapped else 'raw'}_{repeat}.npz")
        try:
            result = _subprocess({**spec0, "impl": impl, "pass": name, "size": size, "images": images,
                                  "mapped": mapped, "out": out})
        except RuntimeError as err:  # report it and go on: the other runs still count
            print(json.dumps({"impl": impl, "pass": name, "size": size, "mapped": mapped, "failed": str(err)}),
                  flush=True)
            return
        result.update(repeat=repeat, out=out)
        print(json.dumps(result), flush=True)
        with open(log_path, "a") as f:  # a partial run can still be summarised (--summary_only)
            f.write(json.dumps(result) + "\n")
        runs.append(result)

    # size by size (the small size's figures first), interleaved ours, official, ours, official
    for size, count in zip(args.sizes, args.num_images):
        for repeat in range(args.repeats):
            for name in args.passes:
                for impl in ("ours", "official"):
                    run(impl, name, size, count if name != "walk" else 1, False, repeat)
        if size in args.mapped_sizes:
            for name in [p for p in ("make_cam", "advcam") if p in args.passes]:
                for impl in ("ours", "official"):
                    # ours' make_cam needs no mapping: its mapped run is the same function (kept for symmetry)
                    run(impl, name, size, 1, True, 0)
    summary = summarise(args, runs)
    print(json.dumps(summary), flush=True)
    print_table(summary)
    return 0


def print_table(summary: dict) -> None:
    """The markdown table of the summary (min over repeats for times, max for memory)."""
    def fmt(row, impl, key, agg, spec=".2f"):
        return format(agg(row[impl][key]), spec) if row.get(impl) else "not run"

    def num(row, key, spec):
        return format(row[key], spec) if key in row else "–"

    print("| pass, size | ours CPU s/img (wall) | official CPU s/img (wall) | CPU ratio official/ours "
          "| peak RSS ours / official MiB | max CAM diff raw / mapped | label agreement raw / mapped | load |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in summary["rows"]:
        loads = [v for impl in ("ours", "official") if r.get(impl) for v in r[impl]["load_avg_1min"]]
        print(f"| {r['pass']}, {r['size']}² | {fmt(r, 'ours', 'cpu_s_per_image', min)} "
              f"({fmt(r, 'ours', 's_per_image', min)}) | {fmt(r, 'official', 'cpu_s_per_image', min)} "
              f"({fmt(r, 'official', 's_per_image', min)}) | {num(r, 'cpu_ratio_official_over_ours', '.2f')} "
              f"| {fmt(r, 'ours', 'peak_rss_mib', max, '.0f')} / {fmt(r, 'official', 'peak_rss_mib', max, '.0f')} "
              f"| {num(r, 'raw_max_abs_diff', '.2g')} / {num(r, 'mapped_max_abs_diff', '.2g')} "
              f"| {num(r, 'raw_label_agreement_min', '.2%')} / {num(r, 'mapped_label_agreement_min', '.2%')} "
              f"| {min(loads, default=float('nan')):.1f} – {max(loads, default=float('nan')):.1f} |")


def summarise(args, runs: list[dict]) -> dict:
    rows = []
    for name in args.passes:
        for size in args.sizes:
            timed = {impl: [r for r in runs if r["pass"] == name and r["size"] == size and not r["mapped"]
                            and r["impl"] == impl] for impl in ("ours", "official")}
            row = {"pass": name, "size": size}
            for impl, rs in timed.items():
                row[impl] = {"s_per_image": [r["s_per_image"] for r in rs],
                             "cpu_s_per_image": [r["cpu_s_per_image"] for r in rs],
                             "peak_rss_mib": [r["peak_rss_mib"] for r in rs],
                             "load_avg_1min": [r["load_avg"][0] for r in rs]} if rs else None
            if row["ours"] and row["official"]:
                row["cpu_ratio_official_over_ours"] = round(
                    min(row["official"]["cpu_s_per_image"]) / min(row["ours"]["cpu_s_per_image"]), 2)
                row["wall_ratio_official_over_ours"] = round(
                    min(row["official"]["s_per_image"]) / min(row["ours"]["s_per_image"]), 2)
                row["rss_ratio_ours_over_official"] = round(
                    max(row["ours"]["peak_rss_mib"]) / max(row["official"]["peak_rss_mib"]), 2)
            for kind in ("raw", "mapped"):
                pair = {impl: [r for r in runs if r["pass"] == name and r["size"] == size and r["impl"] == impl
                               and r["mapped"] == (kind == "mapped") and r["repeat"] == 0] for impl in timed}
                if not (pair["ours"] and pair["official"]):
                    continue
                a, b = np.load(pair["ours"][0]["out"]), np.load(pair["official"][0]["out"])
                keys = [k for k in a.files if k in b.files]
                if name == "walk":
                    th = args.walk_bg_threshold
                    diffs = [cam_difference(max_normalised(a[k]), max_normalised(b[k]), th) for k in keys]
                else:
                    th = args.label_threshold
                    diffs = [cam_difference(a[k], b[k], th) for k in keys]
                row[f"{kind}_max_abs_diff"] = max(d["max_abs_diff"] for d in diffs)
                row[f"{kind}_label_agreement_min"] = min(d["label_agreement"] for d in diffs)
            rows.append(row)
    return {"bench": "official_side_by_side", "threads": args.threads, "adv_engine": args.adv_engine,
            "official_resize": args.official_resize, "load_avg_end": [round(v, 2) for v in os.getloadavg()],
            "rows": rows}


if __name__ == "__main__":
    sys.exit(main())
