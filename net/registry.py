"""The registered names of the networks and of the method switches, without importing torch.

``misc/cli.py`` takes its ``--backbone``/``--seg_backbone`` and method choices from here so that parsing (and
``--help``) stays fast and torch-free; the modules that implement the names (net/backbones.py BACKBONES, net/irn.py
BOUNDARY_BRANCHES, net/seg_net.py, net/zoo.py KINDS) check at import that they implement exactly these, and
tests/test_backbones.py checks it once more.
"""
from __future__ import annotations

# feature extractors (net/backbones.py BACKBONES)
BACKBONE_NAMES = ("efficientnet_lite0", "efficientnet_lite2", "resnet50", "vit_small_patch16", "vit_base_patch16")
DEFAULT_BACKBONE = "efficientnet_lite0"

# what a checkpoint's "kind" says it holds (net/zoo.py KINDS)
MODEL_KINDS = ("cam", "irn", "aff", "seg", "disc")

# method switches
IRN_BOUNDARIES = ("gated", "plain")  # --irn_boundary: net/irn.py BOUNDARY_BRANCHES
SEG_DECODERS = ("deeplab", "fpn")  # --seg_decoder: net/seg_net.py
RW_METHODS = ("irn", "affinitynet", "none")  # --rw_method: whose affinities the walk follows (none: no walk)
SEMI_METHODS = ("self_training", "s4gan")  # --semi_method: step/train_semi.py
PREDICT_ENGINES = ("exact", "fast", "onnx")  # --predict_engine: misc/inference_engine.py
