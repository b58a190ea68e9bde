"""The one argument parser shared by ``run_sample.py`` and ``obtain_CAM_masking.py``.

Flat and typed, grouped by stage, with stage prefixes. The seed's spellings (``--cam_num_epoches``,
``--x_pass True``) are accepted as aliases of the new names so that its README runs as written.
"""
from __future__ import annotations

import argparse

# Passes in pipeline order: (pass flag without "_pass", step module). run_sample runs them in this order.
PASSES = (
    ("train_cam", "train_cam"),
    ("make_cam", "make_cam"),
    ("make_adv_cam", "make_adv_cam"),
    ("eval_cam", "eval_cam"),
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
    ("eval_seg", "eval_seg"),
    ("predict", "predict"),
    ("report", "make_report"),
)

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


def _bool(group, *names, default: bool, help: str, dest: str | None = None) -> None:
    # nargs="?" + const=True: a bare "--x_pass" means True, "--x_pass False" means False.
    kwargs = dict(type=str2bool, nargs="?", const=True, default=default, metavar="BOOL", help=help)
    if dest:
        kwargs["dest"] = dest
    group.add_argument(*names, **kwargs)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Weakly supervised building / land-cover segmentation: run one or more stage passes.")

    g = parser.add_argument_group("environment")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--num_workers", type=int, default=0, help="DataLoader workers")
    g.add_argument("--log_name", default="result/sample_train_eval", help="log file path without .log")
    _bool(g, "--quiet", default=False, help="no progress bars, warnings only")
    _bool(g, "--overwrite", default=False, help="recompute items whose artifacts already exist")
    _bool(g, "--resume", default=False, help="training passes resume from their last checkpoint")
    _bool(g, "--skip_bad", default=False, help="skip (and count) unreadable items instead of stopping")

    g = parser.add_argument_group("data")
    g.add_argument("--voc12_root", default="Dataset/potsdam",
                   help="data folder with JPEGImages/, SegmentationClassAug/, classes.json, cls_labels.npy")
    g.add_argument("--train_list", default="cdy12/train_aug.txt")
    g.add_argument("--infer_list", default="cdy12/train_aug.txt", help="images the inference passes process")
    g.add_argument("--eval_list", default=None, help="images the eval passes score (default: --infer_list)")
    g.add_argument("--cls_labels_path", default=None, help="default: <voc12_root>/cls_labels.npy")

    g = parser.add_argument_group("network")
    g.add_argument("--backbone", default="efficientnet_lite0", choices=("efficientnet_lite0", "resnet50"))
    g.add_argument("--pretrained", default="default",
                   help="ImageNet weights: 'default' (shipped EfficientNet-Lite0 weights; none for resnet50), "
                        "a .pth path (e.g. your torchvision ResNet-50 file), or 'none'")

    g = parser.add_argument_group("class activation maps")
    g.add_argument("--cam_network", default="net.resnet50_cam", help="accepted for seed compatibility; "
                   "the network is chosen by --backbone")
    g.add_argument("--cam_crop_size", type=int, default=256)
    g.add_argument("--cam_train_scales", type=float_list, default=(0.7, 1.3),
                   help="train_cam: range (min,max) of the random rescale before cropping; for 0.5 m imagery "
                        "train at the scales you infer at, e.g. 1.5,2.0 with --cam_crop_size 512")
    g.add_argument("--cam_output_stride", type=int, default=16, choices=(8, 16),
                   help="8: CAMs on a 2x finer grid for small buildings (~2x slower); the IRN keeps stride 16")
    g.add_argument("--cam_batch_size", type=int, default=16)
    g.add_argument("--cam_num_epochs", "--cam_num_epoches", dest="cam_num_epochs", type=int, default=5)
    g.add_argument("--cam_learning_rate", type=float, default=0.0002,
                   help="backbone learning rate (the classifier gets 10x); EfficientNet-Lite0 diverges at 0.01")
    g.add_argument("--cam_weight_decay", type=float, default=1e-4)
    g.add_argument("--cam_eval_thres", type=float, default=None,
                   help="fixed background threshold for eval_cam (default: sweep and report the best)")
    g.add_argument("--cam_scales", type=float_list, default=(1.0, 0.5, 1.5, 2.0))
    g.add_argument("--cam_num_overlays", type=int, default=8, help="PNG overlays written per pass")
    g.add_argument("--cam_smooth_loss", type=float, default=0.0, help="SBNet smoothness loss weight")
    g.add_argument("--cam_boundary_loss", type=float, default=0.0, help="SBNet boundary loss weight")

    g = parser.add_argument_group("adversarial CAM climbing (AdvCAM)")
    g.add_argument("--adv_iter", type=int, default=2)
    g.add_argument("--AD_coeff", "--ad_coeff", dest="AD_coeff", type=float, default=7.0)
    g.add_argument("--AD_stepsize", "--ad_stepsize", dest="AD_stepsize", type=float, default=0.08)
    g.add_argument("--score_th", type=float, default=0.6)
    g.add_argument("--adv_engine", choices=("exact", "fast"), default="fast",
                   help="fast: closed-form CAM-head gradient on a BN-folded copy that keeps only what the backward "
                        "pass needs (same CAMs up to float32 rounding, less memory); exact: autograd through the "
                        "network as trained")

    g = parser.add_argument_group("inter-pixel relation labels")
    g.add_argument("--conf_fg_thres", type=float, default=0.30)
    g.add_argument("--conf_bg_thres", type=float, default=0.05)

    g = parser.add_argument_group("inter-pixel relation network (IRN)")
    g.add_argument("--irn_network", default="net.resnet50_irn", help="accepted for seed compatibility")
    g.add_argument("--irn_boundary", default="gated", choices=("gated", "plain"))
    g.add_argument("--irn_crop_size", type=int, default=256)
    g.add_argument("--irn_batch_size", type=int, default=16)
    g.add_argument("--irn_num_epochs", "--irn_num_epoches", dest="irn_num_epochs", type=int, default=3)
    g.add_argument("--irn_learning_rate", type=float, default=0.1)
    g.add_argument("--irn_weight_decay", type=float, default=1e-4)
    g.add_argument("--beta", type=int, default=10)
    g.add_argument("--exp_times", type=int, default=8, help="random-walk iterations = 2 ** exp_times")
    g.add_argument("--ins_seg_bg_thres", type=float, default=0.25)
    g.add_argument("--sem_seg_bg_thres", type=float, default=0.25)
    _bool(g, "--sem_seg_save_rw", default=False,
          help="also write the walk's scores to <sem_seg_out_dir>/rw/ (CAM format) to sweep the threshold with eval_cam")
    g.add_argument("--sem_seg_cam_power", type=float, default=1.5,
                   help="make_sem_seg: CAMs are raised to this power before the random walk (AdvCAM 1.5, IRN 1)")
    g.add_argument("--rw_normalize", default="max", choices=("max", "none", "local"),
                   help="make_sem_seg: divide the walked scores before the background threshold by their maximum "
                        "(max: IRN), by nothing (none: the CAMs' scale) or by the walk of a map of ones (local: the "
                        "region's mean CAM)")
    g.add_argument("--rw_method", default="irn", choices=("irn", "affinitynet"),
                   help="make_sem_seg: walk over IRN's boundary map (irn) or AffinityNet's learned affinities "
                        "(affinitynet: train it with --train_aff_pass; the paper's --beta is 8)")

    g = parser.add_argument_group("AffinityNet")
    g.add_argument("--aff_crop_size", type=int, default=256)
    g.add_argument("--aff_batch_size", type=int, default=16)
    g.add_argument("--aff_num_epochs", "--aff_num_epoches", dest="aff_num_epochs", type=int, default=3)
    g.add_argument("--aff_learning_rate", type=float, default=0.1,
                   help="embedding head learning rate (the backbone is the CAM network's, frozen)")
    g.add_argument("--aff_weight_decay", type=float, default=1e-4)
    g.add_argument("--aff_weights_name", default="sess/aff.pth")

    g = parser.add_argument_group("segmentation model")
    g.add_argument("--seg_label_source", default="pseudo", choices=("pseudo", "gt", "mixed"))
    g.add_argument("--seg_pixel_list", default=None, help="mixed: images whose ground-truth masks are used")
    g.add_argument("--seg_crop_size", type=int, default=256)
    g.add_argument("--seg_batch_size", type=int, default=8)
    g.add_argument("--seg_num_epochs", type=int, default=10)
    g.add_argument("--seg_learning_rate", type=float, default=0.001)
    g.add_argument("--seg_weight_decay", type=float, default=1e-4)
    g.add_argument("--seg_val_list", default=None, help="held-out list for eval_seg")
    g.add_argument("--predict_input", default=None, help="scene(s) to map: a file, folder or glob")
    g.add_argument("--predict_window", type=int, default=512)
    g.add_argument("--predict_overlap", type=int, default=64)
    g.add_argument("--seg_head_channels", type=int, default=256, help="ASPP/decoder width of the segmentation net")
    g.add_argument("--seg_num_overlays", type=int, default=8, help="eval_seg: PNG overlays written")
    g.add_argument("--predict_batch_size", type=int, default=4, help="windows per forward pass")
    g.add_argument("--predict_engine", choices=("exact", "fast", "onnx"), default="fast",
                   help="exact: the network as trained; fast: BatchNorm folded into the convolutions (same logits "
                        "up to float32 rounding); onnx: the folded network in ONNX Runtime, CPU only (optional: "
                        "pip install onnxruntime onnx)")
    g.add_argument("--predict_building_class", default="building",
                   help="class whose footprints are vectorized to <stem>_buildings.geojson")
    g.add_argument("--predict_simplify", type=float, default=1.0, help="footprint simplification tolerance (px)")
    g.add_argument("--predict_min_area", type=float, default=4.0, help="footprints smaller than this (px) are dropped")

    g = parser.add_argument_group("active learning")
    g.add_argument("--al_strategy", default="entropy", choices=("entropy", "margin", "random"),
                   help="select_tiles: rank the pool by uncertainty (entropy, margin) or draw --seed-seeded at random")
    g.add_argument("--al_ratio", type=float, default=0.05, help="fraction of the pool to label, e.g. 0.05")
    g.add_argument("--al_model", default="cam", choices=("cam", "seg"),
                   help="whose uncertainty: the CAM classifier's image-level sigmoids (--cam_weights_name) or the "
                        "segmenter's pixel softmax averaged per tile (--seg_weights_name)")
    g.add_argument("--al_pool_list", default=None, help="tiles to choose from (default: --train_list)")
    g.add_argument("--al_out_list", default=None, help="chosen list (default: cdy12/al_<strategy>_<ratio>.txt); "
                   "the scores go to the same path with .json")

    g = parser.add_argument_group("semi-supervised")
    g.add_argument("--semi_labeled_list", default=None, help="tiles trained with their ground-truth masks")
    g.add_argument("--semi_unlabeled_list", default=None,
                   help="tiles trained with pseudo labels (default: --train_list minus the labelled tiles)")
    g.add_argument("--semi_method", default="self_training", choices=("self_training", "s4gan"))
    g.add_argument("--semi_conf_thres", type=float, default=0.9,
                   help="self_training: teacher pixels with a lower top probability are ignored")
    g.add_argument("--semi_class_portion", type=float, default=0.0,
                   help="self_training: class-balanced pseudo labels (CBST): each predicted class keeps at least its "
                        "most confident fraction of the batch's pixels, e.g. 0.5 (0 = the global threshold only)")
    g.add_argument("--semi_num_epochs", type=int, default=10, help="an epoch is one pass over the unlabelled tiles")
    g.add_argument("--semi_unsup_weight", type=float, default=1.0, help="weight of the pseudo-label loss")
    g.add_argument("--semi_warmup_epochs", type=int, default=1,
                   help="epochs trained on the labelled tiles only before pseudo labels count")
    g.add_argument("--semi_ema_decay", type=float, default=0.99,
                   help="self_training: EMA teacher decay (0 = the current student, in eval mode)")
    g.add_argument("--semi_init_weights", default=None,
                   help="start from this segmentation checkpoint (e.g. train_seg on the labelled tiles)")
    g.add_argument("--semi_weights_name", default="sess/semi.pth")
    g.add_argument("--s4gan_disc_thres", type=float, default=0.6,
                   help="s4gan: an unlabelled tile is pseudo-labelled when the discriminator's confidence exceeds this")
    g.add_argument("--s4gan_fm_weight", type=float, default=0.1, help="s4gan: feature-matching loss weight")
    g.add_argument("--s4gan_disc_lr", type=float, default=1e-4, help="s4gan: discriminator Adam learning rate")
    g.add_argument("--s4gan_disc_channels", type=int, default=32,
                   help="s4gan: width of the discriminator's first conv (S4GAN: 64; 32 is 4x cheaper on a CPU)")

    g = parser.add_argument_group("output paths")
    g.add_argument("--cam_weights_name", default="sess/res50_cam.pth")
    g.add_argument("--irn_weights_name", default="sess/res50_irn.pth")
    g.add_argument("--seg_weights_name", default="sess/seg.pth")
    g.add_argument("--cam_out_dir", default="result/cam")
    g.add_argument("--ir_label_out_dir", default="result/ir_label")
    g.add_argument("--sem_seg_out_dir", default="result/sem_seg")
    g.add_argument("--ins_seg_out_dir", default="result/ins_seg")
    g.add_argument("--seg_out_dir", default="result/seg")
    g.add_argument("--report_path", default="result/report.html",
                   help="report pass: one self-contained HTML page (eval tables, pictures)")
    g.add_argument("--report_num_images", type=int, default=8, help="report pass: images shown as picture rows")

    g = parser.add_argument_group("passes (run in pipeline order)")
    for flag, _module in PASSES:
        _bool(g, f"--{flag}_pass", default=False, help=f"run step/{_module}.py")
    return parser


def enabled_passes(args: argparse.Namespace) -> list[str]:
    """Step module names of the passes switched on, in pipeline order."""
    return [module for flag, module in PASSES if getattr(args, f"{flag}_pass")]
