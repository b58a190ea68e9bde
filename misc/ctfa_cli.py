"""The command-line options of the CTFA pass (step/train_ctfa.py); misc/cli.py adds this group to the one parser.

Torch-free, as misc/cli.py: parsing never imports torch.
"""
from __future__ import annotations

from misc.cli import (BACKBONE_CHOICES, _bool, fraction, nonneg_float, nonneg_int, positive_float, positive_int)


def add_ctfa_arguments(parser) -> None:
    g = parser.add_argument_group(
        "CTFA (single-stage CAMs and segmenter: --train_ctfa_pass writes --cam_weights_name, which make_cam reads)")
    g.add_argument("--ctfa_backbone", default="vit_base_patch16", choices=BACKBONE_CHOICES,
                   help="CTFA's encoder: a ViT (the paper's ViT-B/16; weights via --pretrained PATH, a timm/DeiT "
                        ".pth) or a CNN, whose stage-3/stage-4 maps then carry the same token losses")
    g.add_argument("--ctfa_crop_size", type=positive_int, default=256, help="train_ctfa: square training crop (px)")
    g.add_argument("--ctfa_batch_size", type=positive_int, default=4, help="train_ctfa: images per step")
    g.add_argument("--ctfa_num_epochs", type=positive_int, default=5, help="train_ctfa: passes over --train_list")
    g.add_argument("--ctfa_learning_rate", type=positive_float, default=6e-5,
                   help="AdamW learning rate of the backbone (classifier, decoder and projector: 10x; ToCo's 6e-5)")
    g.add_argument("--ctfa_weight_decay", type=nonneg_float, default=0.01, help="train_ctfa: AdamW weight decay")
    g.add_argument("--ctfa_warmup_epochs", type=nonneg_int, default=1,
                   help="epochs trained on the classification and token losses only, before the CAMs are good enough "
                        "to give the decoder pseudo labels")
    g.add_argument("--ctfa_aux_layer", type=int, default=-1,
                   help="ViT block (0-based) whose patch-token relations supervise the last block's (CTLM "
                        "patch-wise); -1: 3/4 of the depth (block 8 of 0..11)")
    g.add_argument("--ctfa_bg_high", type=fraction, default=0.7,
                   help="pseudo labels: a pixel is its best class where that CAM reaches this (normalised scores)")
    g.add_argument("--ctfa_bg_low", type=fraction, default=0.25,
                   help="pseudo labels: background below this, ignored between the two thresholds (background-free "
                        "data: ignored below this)")
    _bool(g, "--ctfa_par", default=True,
          help="refine the CAMs by PAR (--par_num_iter, --par_dilations) before cutting the pseudo labels")
    g.add_argument("--ctfa_patch_weight", type=nonneg_float, default=0.2, help="weight of CTLM's patch-wise loss")
    g.add_argument("--ctfa_class_weight", type=nonneg_float, default=0.5, help="weight of CTLM's class-wise loss")
    g.add_argument("--ctfa_seg_weight", type=nonneg_float, default=0.1,
                   help="weight of the decoder's cross-entropy on the pseudo labels")
    g.add_argument("--ctfa_fg_weight", type=nonneg_float, default=0.1,
                   help="weight of the foreground branch's binary cross-entropy")
    g.add_argument("--ctfa_num_local", type=nonneg_int, default=2,
                   help="local crops per step for the class-wise loss (0 switches it off)")
    g.add_argument("--ctfa_local_size", type=positive_int, default=96, help="side of the local crops (px)")
    g.add_argument("--ctfa_head_channels", type=positive_int, default=256, help="width of the dual-branch decoder")
    g.add_argument("--ctfa_seg_weights_name", default="sess/ctfa_seg.pth",
                   help="the decoder as a segmentation checkpoint (kind seg): pass it as --seg_weights_name to "
                        "eval_seg / predict")
