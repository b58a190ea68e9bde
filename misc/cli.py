"""The one argument parser shared by ``run_sample.py`` and ``obtain_CAM_masking.py``.

Flat and typed, grouped by stage, with stage prefixes. The seed's spellings (``--cam_num_epoches``,
``--x_pass True``) are accepted as aliases of the new names so that its README runs as written.
"""
from __future__ import annotations

import argparse

from net.registry import (BACKBONE_NAMES, DEFAULT_BACKBONE, IRN_BOUNDARIES, PREDICT_ENGINES, RW_METHODS, SEG_DECODERS,
                          SEMI_METHODS)

# Passes in pipeline order: (pass flag without "_pass", step module). run_sample runs them in this order.
PASSES = (
    ("train_cam", "train_cam"),
    ("train_ctfa", "train_ctfa"),
    ("make_cam", "make_cam"),
    ("make_adv_cam", "make_adv_cam"),
    ("refine_cam", "refine_cam"),
    ("eval_cam", "eval_cam"),
    ("pick_thresholds", "pick_thresholds"),
    ("cam_to_ir_label", "cam_to_ir_label"),
    ("train_irn", "train_irn"),
    ("train_aff", "train_aff"),
    ("make_ins_seg", "make_ins_seg_labels"),
    ("eval_ins_seg", "eval_ins_seg"),
    ("make_sem_seg", "make_sem_seg_labels"),
    ("eval_sem_seg", "eval_sem_seg"),
    ("select_tiles", "select_tiles"),
    ("train_seg", "train_seg"),
    ("train_semi", "train_semi"),
    ("relabel_seg", "relabel_seg"),
    ("eval_seg", "eval_seg"),
    ("predict", "predict"),
    ("report", "make_report"),
)

# The registered backbones (net/registry.py: torch-free, so parsing needs no torch import; net/backbones.py checks that
# it implements exactly these).
BACKBONE_CHOICES = BACKBONE_NAMES

_TRUE = {"true", "1", "yes", "y", "on", "t"}
_FALSE = {"false", "0", "no", "n", "off", "f"}


def str2bool(value: str) -> bool:
    """Parse True/False/true/false/1/0/yes/no; anything else is an error (never a silent skip)."""
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (True/False/1/0), got {value!r}")


def float_list(value: str) -> tuple[float, ...]:
    """'1.0,0.5,1.5' or '(1.0, 0.5)' -> (1.0, 0.5, ...)."""
    try:
        items = [v for v in value.strip("()[] ").replace(" ", "").split(",") if v]
        result = tuple(float(v) for v in items)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}") from err
    if not result:
        raise argparse.ArgumentTypeError("expected at least one number")
    return result


SEG_AUGMENTS = ("scale", "dihedral", "jitter")


def augment_list(value: str) -> tuple[str, ...]:
    """'scale,dihedral,jitter' (any subset, in any order) or 'none' -> the augmentations to apply."""
    items = [v for v in str(value).replace(" ", "").lower().split(",") if v]
    if items == ["none"]:
        return ()
    unknown = [v for v in items if v not in SEG_AUGMENTS]
    if unknown or not items:
        raise argparse.ArgumentTypeError(f"expected 'none' or a comma list of {', '.join(SEG_AUGMENTS)}; got {value!r}")
    return tuple(a for a in SEG_AUGMENTS if a in items)


# --- numbers checked at parse time ----------------------------------------------------------------------------------
# Each type names its range (``range_text``); the help formatter prints it next to the default, so --help shows
# e.g. "(default: 256; > 0)". A value outside is an argparse error naming the option, before anything runs.

def _ranged(base, test, text: str, name: str):
    def parse(value):
        try:
            number = base(value)
        except (TypeError, ValueError) as err:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if base is int else 'a number'}, "
                                             f"got {value!r}") from err
        if number != number or not test(number):  # NaN fails every range
            raise argparse.ArgumentTypeError(f"must be {text}, got {value!r}")
        return number
    parse.__name__ = name  # argparse names the type in "invalid <name> value" messages
    parse.range_text = text
    return parse


positive_int = _ranged(int, lambda v: v > 0, "> 0", "positive integer")
nonneg_int = _ranged(int, lambda v: v >= 0, ">= 0", "non-negative integer")
positive_float = _ranged(float, lambda v: 0 < v < float("inf"), "> 0", "positive number")
nonneg_float = _ranged(float, lambda v: 0 <= v < float("inf"), ">= 0", "non-negative number")
fraction = _ranged(float, lambda v: 0 <= v <= 1, "in [0, 1]", "number in [0, 1]")
open_fraction = _ranged(float, lambda v: 0 < v <= 1, "in (0, 1]", "number in (0, 1]")


def positive_float_list(value: str) -> tuple[float, ...]:
    """:func:`float_list` whose every number is > 0 (scales: 0 or a negative scale makes every CAM constant)."""
    result = float_list(value)
    bad = [v for v in result if not 0 < v < float("inf")]
    if bad:
        raise argparse.ArgumentTypeError(f"every scale must be > 0, got {value!r}")
    return result


positive_float_list.range_text = "comma list, each > 0"


class HelpFormatter(argparse.HelpFormatter):
    """The default (as it would be typed) and the allowed range after every option's help: "(default: 256; > 0)";
    "(required)" for required options; no "(default: None)" noise when the help already says what happens."""

    def _get_help_string(self, action):
        text = action.help or ""
        extras = []
        if action.required:
            extras.append("required")
        elif action.default not in (None, "", argparse.SUPPRESS) and "default" not in text.lower():
            default = action.default
            if isinstance(default, (tuple, list)):
                default = ",".join(str(v) for v in default)
            extras.append(f"default: {default}".replace("%", "%%"))  # help strings are %-formatted
        range_text = getattr(action.type, "range_text", None)
        if range_text:
            extras.append(range_text)
        return f"{text} ({'; '.join(extras)})" if extras else text


class ArgumentParser(argparse.ArgumentParser):
    """The toolkit's parser: no prefix abbreviations (``--cam_scale`` is not ``--cam_scales``), defaults and ranges
    in --help, and a short error with "did you mean --X?" for a mistyped option instead of the whole usage."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def option_names(self) -> list[str]:
        return sorted(o for a in self._actions for o in a.option_strings if o.startswith("--"))

    def suggest(self, token: str) -> str | None:
        """The option a mistyped ``token`` most likely meant (a prefix of exactly one option, else the closest)."""
        import difflib

        flag = token.split("=", 1)[0]
        options = self.option_names()
        prefixed = [o for o in options if o.startswith(flag)]
        if len(prefixed) == 1:
            return prefixed[0]
        close = difflib.get_close_matches(flag, prefixed or options, n=1, cutoff=0.6)
        return close[0] if close else None

    def error(self, message: str):
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            tokens = message[len(prefix):].split()
            flags = [t for t in tokens if t.startswith("-")]
            parts = []
            for flag in flags:
                guess = self.suggest(flag) if flag.startswith("--") else None
                parts.append(f"unknown option {flag}" + (f": did you mean {guess}?" if guess else ""))
            message = "; ".join(parts) or f"unexpected argument {' '.join(tokens)} (options are --name value)"
        self.exit(2, f"{self.prog}: error: {message}\n(`{self.prog} --help` lists every option)\n")


def _bool(group, *names, default: bool, help: str, dest: str | None = None) -> None:
    # nargs="?" + const=True: a bare "--x_pass" means True, "--x_pass False" means False.
    kwargs = dict(type=str2bool, nargs="?", const=True, default=default, metavar="BOOL", help=help)
    if dest:
        kwargs["dest"] = dest
    group.add_argument(*names, **kwargs)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=prog, usage="%(prog)s --<pass>_pass True [--<pass>_pass True ...] [options]",
        description="Weakly supervised building / land-cover segmentation: run one or more stage passes.")

    g = parser.add_argument_group("environment")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    g.add_argument("--seed", type=nonneg_int, default=0,
                   help="one seed for python, numpy and torch (sample order, crops, dropout)")
    g.add_argument("--num_workers", type=nonneg_int, default=0,
                   help="DataLoader workers (cam_to_ir_label: CRF processes)")
    g.add_argument("--log_name", default="result/sample_train_eval", help="log file path without .log")
    _bool(g, "--quiet", default=False, help="no progress bars, warnings only")
    _bool(g, "--overwrite", default=False, help="recompute items whose artifacts already exist")
    _bool(g, "--resume", default=False, help="training passes resume from their last checkpoint")
    _bool(g, "--skip_bad", default=False, help="skip (and count) unreadable items instead of stopping")

    g = parser.add_argument_group("data")
    g.add_argument("--voc12_root", default="Dataset/potsdam",
                   help="data folder with JPEGImages/, SegmentationClassAug/, classes.json, cls_labels.npy "
                        "(made by `python -m data.prepare --out_root ...` and write_numpy.py)")
    g.add_argument("--train_list", default="cdy12/train_aug.txt",
                   help="images the training passes (and cam_to_ir_label) use, one name per line "
                        "(written by write_numpy.py --out_list)")
    g.add_argument("--infer_list", default="cdy12/train_aug.txt", help="images the inference passes process")
    g.add_argument("--eval_list", default=None, help="images the eval passes score (default: --infer_list)")
    g.add_argument("--cls_labels_path", default=None, help="default: <voc12_root>/cls_labels.npy")
    g.add_argument("--background", default="auto", choices=("auto", "threshold", "none"),
                   help="how pixels become background: 'threshold' = a constant background score competes with the "
                        "CAMs (data with a background/clutter class); 'none' = background-free, each pixel takes "
                        "the best-scoring present class (every pixel belongs to some class: Dubai, DeepGlobe); "
                        "'auto' = 'none' when classes.json says background_free (data.prepare --fg_classes all "
                        "on such a palette)")
    g.add_argument("--class_scale", default="mean", choices=("max", "mean"),
                   help="background-free argmax and margins (eval_cam, cam_to_ir_label, pick_thresholds, make_sem_seg): compare the present classes' maps as "
                        "written (max: each peaks at 1) or each divided by its image mean (mean: a peaky class such as "
                        "building is not outvoted by broad ones; measured on Dubai, BENCHMARKS.md)")

    g = parser.add_argument_group("network")
    g.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=BACKBONE_CHOICES,
                   help="feature extractor of the CAM classifier, IRN and AffinityNet (the segmenter: --seg_backbone)")
    g.add_argument("--pretrained", default="default",
                   help="ImageNet weights: 'default' (shipped EfficientNet-Lite0/Lite2 weights; none for resnet50), "
                        "a .pth path (e.g. your torchvision ResNet-50 file), or 'none'")

    g = parser.add_argument_group("class activation maps")
    g.add_argument("--cam_network", default="net.resnet50_cam", help="accepted for seed compatibility; "
                   "the network is chosen by --backbone")
    g.add_argument("--cam_crop_size", type=positive_int, default=256, help="train_cam: square training crop (px)")
    g.add_argument("--cam_train_scales", type=positive_float_list, default=(0.7, 1.3),
                   help="train_cam: range (min,max) of the random rescale before cropping; for 0.5 m imagery "
                        "train at the scales you infer at, e.g. 1.5,2.0 with --cam_crop_size 512")
    g.add_argument("--cam_output_stride", type=int, default=16, choices=(8, 16),
                   help="8: CAMs on a 2x finer grid for small buildings (~2x slower); the IRN keeps stride 16")
    g.add_argument("--cam_batch_size", type=positive_int, default=16, help="train_cam: images per step")
    g.add_argument("--cam_num_epochs", "--cam_num_epoches", dest="cam_num_epochs", type=positive_int, default=5,
                   help="train_cam: passes over --train_list")
    g.add_argument("--cam_learning_rate", type=positive_float, default=0.0002,
                   help="backbone learning rate (the classifier gets 10x); EfficientNet-Lite0 diverges at 0.01")
    g.add_argument("--cam_weight_decay", type=nonneg_float, default=1e-4, help="train_cam: SGD weight decay")
    g.add_argument("--cam_eval_thres", type=fraction, default=None,
                   help="fixed background threshold for eval_cam (default: sweep and report the best)")
    g.add_argument("--cam_scales", type=positive_float_list, default=(2.0, 3.0),
                   help="make_cam / AdvCAM: input scales whose CAMs are summed (with flips); upsampled inputs give "
                        "small buildings finer maps: on 0.5 m imagery 2.0,3.0 beat the seed's 1.0,0.5,1.5,2.0 by 4 "
                        "building-IoU points")
    g.add_argument("--cam_num_overlays", type=nonneg_int, default=8, help="PNG overlays written per pass")
    g.add_argument("--cam_smooth_loss", type=nonneg_float, default=0.0, help="SBNet smoothness loss weight")
    g.add_argument("--cam_boundary_loss", type=nonneg_float, default=0.0, help="SBNet boundary loss weight")

    g = parser.add_argument_group("adversarial CAM climbing (AdvCAM)")
    g.add_argument("--adv_iter", type=nonneg_int, default=2, help="adversarial climbing steps per image")
    g.add_argument("--AD_coeff", "--ad_coeff", dest="AD_coeff", type=nonneg_float, default=7.0,
                   help="weight of the restricting-mask penalty (keeps the climb off already-strong regions)")
    g.add_argument("--AD_stepsize", "--ad_stepsize", dest="AD_stepsize", type=positive_float, default=0.08,
                   help="step size of each climbing step on the image")
    g.add_argument("--score_th", type=fraction, default=0.6,
                   help="restricting mask: CAM pixels above this share of the maximum are kept from growing")
    g.add_argument("--adv_engine", choices=("exact", "fast"), default="fast",
                   help="fast: closed-form CAM-head gradient on a BN-folded copy that keeps only what the backward "
                        "pass needs (same CAMs up to float32 rounding, less memory); exact: autograd through the "
                        "network as trained")

    g = parser.add_argument_group("inter-pixel relation labels")
    g.add_argument("--threshold_list", default=None,
                   help="pick_thresholds: a few tiles WITH masks to choose the background threshold on (default: "
                        "none, Otsu's cut of the CAM scores, no ground truth needed)")
    g.add_argument("--refined_cam_out_dir", default=None,
                   help="refine_cam: where the refined CAMs go (CAM format; pass it as --cam_out_dir downstream)")
    g.add_argument("--refine_method", default="par", choices=("par", "superpixel"),
                   help="refine_cam: par = pixel-adaptive refinement over colour affinities (AFA/ToCo); superpixel = "
                        "each class map averaged inside SLIC superpixels")
    g.add_argument("--superpixel_size", type=positive_int, default=16,
                   help="refine_cam superpixel: SLIC grid step (px), about one superpixel's side")
    g.add_argument("--superpixel_compactness", type=positive_float, default=10.0,
                   help="refine_cam superpixel: SLIC weight of position against colour (larger = squarer regions)")
    g.add_argument("--par_num_iter", type=nonneg_int, default=10, help="refine_cam: PAR propagation steps")
    g.add_argument("--par_dilations", type=positive_float_list, default=(1, 2, 4, 8, 12, 24),
                   help="refine_cam: neighbour dilations of PAR (AFA's)")
    g.add_argument("--conf_fg_thres", type=fraction, default=0.5,
                   help="cam_to_ir_label (--background threshold): confident class where the strongest CAM exceeds "
                        "this (IRN: 0.30; pick_thresholds gives a label-free value)")
    g.add_argument("--conf_bg_thres", type=fraction, default=0.2,
                   help="cam_to_ir_label (--background threshold): confident background where no CAM exceeds this "
                        "(IRN: 0.05; must not exceed --conf_fg_thres)")
    g.add_argument("--conf_margin", type=fraction, default=0.2,
                   help="background-free IR labels (--background none): a pixel is a confident class where its "
                        "best CAM beats the second best by at least this much (and the CRF agrees); unsure otherwise")

    g = parser.add_argument_group("inter-pixel relation network (IRN)")
    g.add_argument("--irn_network", default="net.resnet50_irn", help="accepted for seed compatibility")
    g.add_argument("--irn_boundary", default="gated", choices=IRN_BOUNDARIES,
                   help="boundary branch: gated convolutions (ACGC) or IRN's plain one")
    g.add_argument("--irn_stride", type=int, default=4, choices=(4, 2),
                   help="train_irn: output stride of the boundary map and displacement field (2: the network sees "
                        "the image upsampled ×2; the walk then runs on the stride-2 grid, with ~16× its cost at the "
                        "same --exp_times); recorded in the weights file")
    g.add_argument("--irn_crop_size", type=positive_int, default=256, help="train_irn: square training crop (px)")
    g.add_argument("--irn_batch_size", type=positive_int, default=16, help="train_irn: images per step")
    g.add_argument("--irn_num_epochs", "--irn_num_epoches", dest="irn_num_epochs", type=positive_int, default=3,
                   help="train_irn: passes over --train_list")
    g.add_argument("--irn_learning_rate", type=positive_float, default=0.1, help="train_irn: SGD learning rate")
    g.add_argument("--irn_weight_decay", type=nonneg_float, default=1e-4, help="train_irn: SGD weight decay")

    g = parser.add_argument_group("random walk and pseudo masks (make_sem_seg, make_ins_seg)")
    g.add_argument("--beta", type=positive_int, default=10,
                   help="random walk: affinities are raised to this power (IRN 10, AffinityNet 8)")
    g.add_argument("--exp_times", type=nonneg_int, default=4,
                   help="random-walk iterations = 2 ** exp_times (IRN: 8; short walks lose least on 0.5 m imagery)")
    g.add_argument("--ins_seg_bg_thres", type=fraction, default=0.25,
                   help="make_ins_seg: background threshold of the walked scores")
    g.add_argument("--sem_seg_bg_thres", type=fraction, default=0.2,
                   help="make_sem_seg (--background threshold): background score of the pseudo masks "
                        "(pick_thresholds gives a label-free value)")
    _bool(g, "--sem_seg_save_rw", default=False,
          help="also write the walk's scores to <sem_seg_out_dir>/rw/ (CAM format) to sweep the threshold with eval_cam")
    g.add_argument("--sem_seg_cam_power", type=positive_float, default=1.5,
                   help="make_sem_seg: CAMs are raised to this power before the random walk (AdvCAM 1.5, IRN 1)")
    g.add_argument("--rw_normalize", default="local", choices=("max", "none", "local"),
                   help="make_sem_seg: divide the walked scores before the background threshold by their maximum "
                        "(max: IRN), by nothing (none: the CAMs' scale) or by the walk of a map of ones (local: the "
                        "region's mean CAM)")
    g.add_argument("--rw_method", default="irn", choices=RW_METHODS,
                   help="make_sem_seg: walk over IRN's boundary map (irn) or AffinityNet's learned affinities "
                        "(affinitynet: train it with --train_aff_pass; the paper's --beta is 8); none: no walk and "
                        "no network, the full-resolution CAMs' labels are the pseudo masks (the eval_cam rule)")

    g = parser.add_argument_group("AffinityNet")
    g.add_argument("--aff_crop_size", type=positive_int, default=256, help="train_aff: square training crop (px)")
    g.add_argument("--aff_batch_size", type=positive_int, default=16, help="train_aff: images per step")
    g.add_argument("--aff_num_epochs", "--aff_num_epoches", dest="aff_num_epochs", type=positive_int, default=3,
                   help="train_aff: passes over --train_list")
    g.add_argument("--aff_learning_rate", type=positive_float, default=0.1,
                   help="embedding head learning rate (the backbone is the CAM network's, frozen)")
    g.add_argument("--aff_weight_decay", type=nonneg_float, default=1e-4, help="train_aff: SGD weight decay")
    g.add_argument("--aff_weights_name", default="sess/aff.pth",
                   help="AffinityNet checkpoint (written by --train_aff_pass)")

    g = parser.add_argument_group("segmentation model")
    g.add_argument("--seg_label_source", default="pseudo", choices=("pseudo", "gt", "mixed"),
                   help="train_seg: train on the pseudo masks (<sem_seg_out_dir>), the ground truth, or both "
                        "(mixed: --seg_pixel_list names the ground-truth tiles)")
    g.add_argument("--seg_pixel_list", default=None, help="mixed: images whose ground-truth masks are used")
    g.add_argument("--seg_crop_size", type=positive_int, default=256, help="train_seg: square training crop (px)")
    g.add_argument("--seg_augment", type=augment_list, default=",".join(SEG_AUGMENTS),
                   help="train_seg: augmentations of the training crops: scale (random 0.75-1.25x), dihedral "
                        "(random flip / 90° rotation), jitter (brightness, contrast, saturation); a comma list "
                        "or 'none'")
    g.add_argument("--seg_batch_size", type=positive_int, default=8, help="train_seg: images per step")
    g.add_argument("--seg_num_epochs", type=positive_int, default=10, help="train_seg: passes over --train_list")
    g.add_argument("--seg_learning_rate", type=positive_float, default=0.001, help="train_seg: learning rate")
    g.add_argument("--seg_weight_decay", type=nonneg_float, default=1e-4, help="train_seg: weight decay")
    g.add_argument("--seg_val_list", default=None, help="held-out list for eval_seg")
    g.add_argument("--seg_head_channels", type=positive_int, default=256,
                   help="ASPP/decoder width of the segmentation net")
    g.add_argument("--seg_backbone", default=None, choices=BACKBONE_CHOICES,
                   help="the segmenter's encoder (default: --backbone). efficientnet_lite2 is the best measured "
                        "(run_recipe.sh's default; on Dubai +1.2 mIoU over Lite0, eval 1.2x slower); demo.sh and "
                        "this flag keep Lite0 for speed")
    g.add_argument("--seg_decoder", default="fpn", choices=SEG_DECODERS,
                   help="fpn: DeepLabV3+ plus a stride-8 top-down step (on Dubai +3.2 building IoU over deeplab); deeplab: "
                        "DeepLabV3+ (ASPP at stride 16, a stride-4 skip)")
    _bool(g, "--seg_tta", default=False,
          help="eval_seg/predict: average the logits of the image and its horizontal and vertical flips (3x the time)")
    g.add_argument("--seg_num_overlays", type=nonneg_int, default=8, help="eval_seg: PNG overlays written")
    g.add_argument("--relabel_conf_thres", type=fraction, default=0.0,
                   help="relabel_seg (self-training): pixels whose winning probability among the tagged classes is "
                        "below this are ignored in the next round (0: keep every pixel)")

    g = parser.add_argument_group("predict (whole scenes; windows also for eval_seg and select_tiles)")
    g.add_argument("--predict_input", default=None, help="scene(s) to map: a file, folder or glob")
    g.add_argument("--predict_window", type=positive_int, default=512,
                   help="predict / eval_seg: sliding-window side (px); memory grows with it")
    g.add_argument("--predict_overlap", type=nonneg_int, default=64,
                   help="predict / eval_seg: overlap of neighbouring windows (px), blended")
    g.add_argument("--predict_batch_size", type=positive_int, default=4, help="windows per forward pass")
    g.add_argument("--predict_engine", choices=PREDICT_ENGINES, default="fast",
                   help="exact: the network as trained; fast: BatchNorm folded into the convolutions (same logits "
                        "up to float32 rounding); onnx: the folded network in ONNX Runtime, CPU only (optional: "
                        "pip install onnxruntime onnx)")
    g.add_argument("--predict_building_class", default="building",
                   help="class whose footprints are vectorized to <stem>_buildings.geojson")
    g.add_argument("--predict_simplify", type=nonneg_float, default=1.0,
                   help="footprint simplification tolerance (px)")
    g.add_argument("--predict_min_area", type=nonneg_float, default=4.0,
                   help="footprints smaller than this (px) are dropped")
    g.add_argument("--bands", "--predict_bands", dest="bands", default="1,2,3",
                   help="predict: the 1-based bands that form R,G,B, e.g. 3,2,1 for BGR(N) imagery")
    g.add_argument("--predict_crs", default=None,
                   help="predict: CRS of the scenes (e.g. EPSG:32640) when the file or its world file has none; "
                        "needs a georeference: GeoTIFF tags, a world file (.pgw/.jgw/.tfw/.wld) or --predict_transform")
    g.add_argument("--predict_transform", default=None,
                   help="predict, one scene: a,b,c,d,e,f with x = a*col + b*row + c, y = d*col + e*row + f at the "
                        "top-left pixel corner (rasterio's Affine), e.g. 0.5,0,500000,0,-0.5,2800000")

    g = parser.add_argument_group("active learning")
    g.add_argument("--al_strategy", default="entropy", choices=("entropy", "margin", "random"),
                   help="select_tiles: rank the pool by uncertainty (entropy, margin) or draw --seed-seeded at random")
    g.add_argument("--al_ratio", type=open_fraction, default=0.05, help="fraction of the pool to label, e.g. 0.05")
    g.add_argument("--al_model", default="seg", choices=("cam", "seg"),
                   help="whose uncertainty: the CAM classifier's image-level sigmoids (--cam_weights_name) or the "
                        "segmenter's pixel softmax averaged per tile (--seg_weights_name)")
    g.add_argument("--al_pool_list", default=None, help="tiles to choose from (default: --train_list)")
    g.add_argument("--al_out_list", default=None, help="chosen list (default: cdy12/al_<strategy>_<ratio>.txt); "
                   "the scores go to the same path with .json")

    g = parser.add_argument_group("semi-supervised")
    g.add_argument("--semi_labeled_list", default=None, help="tiles trained with their ground-truth masks")
    g.add_argument("--semi_unlabeled_list", default=None,
                   help="tiles trained with pseudo labels (default: --train_list minus the labelled tiles)")
    g.add_argument("--semi_method", default="self_training", choices=SEMI_METHODS,
                   help="train_semi: mean-teacher self-training or S4GAN's discriminator-gated pseudo labels")
    g.add_argument("--semi_conf_thres", type=fraction, default=0.9,
                   help="self_training: teacher pixels with a lower top probability are ignored")
    g.add_argument("--semi_class_portion", type=fraction, default=0.0,
                   help="self_training: class-balanced pseudo labels (CBST): each predicted class keeps at least its "
                        "most confident fraction of the batch's pixels, e.g. 0.5 (0 = the global threshold only)")
    g.add_argument("--semi_num_epochs", type=positive_int, default=10,
                   help="an epoch is one pass over the unlabelled tiles")
    g.add_argument("--semi_unsup_weight", type=nonneg_float, default=1.0, help="weight of the pseudo-label loss")
    g.add_argument("--semi_warmup_epochs", type=nonneg_int, default=1,
                   help="epochs trained on the labelled tiles only before pseudo labels count")
    g.add_argument("--semi_ema_decay", type=fraction, default=0.99,
                   help="self_training: EMA teacher decay (0 = the current student, in eval mode)")
    g.add_argument("--semi_init_weights", default=None,
                   help="start from this segmentation checkpoint (e.g. train_seg on the labelled tiles)")
    g.add_argument("--semi_weights_name", default="sess/semi.pth",
                   help="train_semi's checkpoint (train_seg's format: eval_seg and predict load it)")
    g.add_argument("--s4gan_disc_thres", type=fraction, default=0.6,
                   help="s4gan: an unlabelled tile is pseudo-labelled when the discriminator's confidence exceeds this")
    g.add_argument("--s4gan_fm_weight", type=nonneg_float, default=0.1, help="s4gan: feature-matching loss weight")
    g.add_argument("--s4gan_disc_lr", type=positive_float, default=1e-4,
                   help="s4gan: discriminator Adam learning rate")
    g.add_argument("--s4gan_disc_channels", type=positive_int, default=32,
                   help="s4gan: width of the discriminator's first conv (S4GAN: 64; 32 is 4x cheaper on a CPU)")

    g = parser.add_argument_group("output paths")
    g.add_argument("--cam_weights_name", default="sess/cam.pth",
                   help="CAM classifier checkpoint (written by --train_cam_pass, read by make_cam, AdvCAM, ...)")
    g.add_argument("--irn_weights_name", default="sess/irn.pth",
                   help="IRN checkpoint (written by --train_irn_pass, read by make_sem_seg / make_ins_seg)")
    g.add_argument("--seg_weights_name", default="sess/seg.pth",
                   help="segmentation checkpoint (written by --train_seg_pass, read by eval_seg / predict)")
    g.add_argument("--cam_out_dir", default="result/cam", help="CAMs (<name>.npz), overlays, eval_cam.json")
    g.add_argument("--ir_label_out_dir", default="result/ir_label", help="IR labels (<name>.png) and overlays")
    g.add_argument("--sem_seg_out_dir", default="result/sem_seg",
                   help="pseudo masks (<name>.png), overlays, eval_sem_seg.json")
    g.add_argument("--relabel_out_dir", default="result/sem_seg_relabel",
                   help="relabel_seg: the self-training round's pseudo masks (<name>.png); train on them with "
                        "--sem_seg_out_dir <this folder>")
    g.add_argument("--ins_seg_out_dir", default="result/ins_seg",
                   help="instance masks (<name>.npz), eval_ins_seg.json")
    g.add_argument("--seg_out_dir", default="result/seg",
                   help="eval_seg predictions and eval_seg.json; predict's maps, overlays and footprints")
    g.add_argument("--report_path", default="result/report.html",
                   help="report pass: one self-contained HTML page (eval tables, pictures)")
    g.add_argument("--report_num_images", type=nonneg_int, default=8,
                   help="report pass: images shown as picture rows")

    from misc.ctfa_cli import add_ctfa_arguments  # here: misc.ctfa_cli builds on this module's helpers

    add_ctfa_arguments(parser)

    g = parser.add_argument_group("passes (run in pipeline order)")
    for flag, _module in PASSES:
        _bool(g, f"--{flag}_pass", default=False, help=f"run step/{_module}.py")
    return parser


# Where a missing default input comes from: (option, how to create it). run_sample adds the line to a "not found"
# error that names the option's value, so a fresh clone's first run says what to do instead of only "not found".
CREATE_HINTS = (
    ("voc12_root", "prepare the data folder with `python -m data.prepare --images ... --masks ... --out_root {value}` "
                   "and `python write_numpy.py --voc12_root {value}` (README, step 1)"),
    ("train_list", "write it with `python write_numpy.py --out_list {value}` (README, step 1)"),
    ("infer_list", "write it with `python write_numpy.py --out_list {value}` (README, step 1)"),
    ("cls_labels_path", "write it with `python write_numpy.py --cls_labels_path {value}`"),
    ("cam_weights_name", "train it with `--train_cam_pass True --cam_weights_name {value}`"),
    ("irn_weights_name", "train it with `--train_irn_pass True --irn_weights_name {value}`"),
    ("aff_weights_name", "train it with `--train_aff_pass True --aff_weights_name {value}`"),
    ("seg_weights_name", "train it with `--train_seg_pass True --seg_weights_name {value}`"),
    ("semi_weights_name", "train it with `--train_semi_pass True --semi_weights_name {value}`"),
)


def creation_hint(message: str, args: argparse.Namespace) -> tuple[list[str], str] | None:
    """(the options, how to create it) for the missing input a 'not found' ``message`` names, when it is one of the
    options' values. The longest matching value wins (a weights file under the data folder is a weights file);
    options sharing that value are all named (--train_list and --infer_list have the same default)."""
    matches = [(str(getattr(args, option)), option, hint) for option, hint in CREATE_HINTS
               if getattr(args, option, None) and str(getattr(args, option)) in message]
    if not matches:
        return None
    value = max(matches, key=lambda m: len(m[0]))[0]
    chosen = [m for m in matches if m[0] == value]
    return [f"--{m[1]}" for m in chosen], chosen[0][2].format(value=value)


def enabled_passes(args: argparse.Namespace) -> list[str]:
    """Step module names of the passes switched on, in pipeline order."""
    return [module for flag, module in PASSES if getattr(args, f"{flag}_pass")]
