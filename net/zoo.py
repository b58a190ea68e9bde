"""Every network of the pipeline built, saved and loaded in one place, from a self-describing checkpoint.

A checkpoint says what it holds in three fields, and the weights fit what they say::

    kind    "cam" | "irn" | "aff" | "seg" | "disc"   (KINDS; net/registry.py MODEL_KINDS)
    name    the registered backbone ("efficientnet_lite0", ...; None for the discriminator, which has none)
    config  the constructor's keywords besides the backbone, e.g. {"num_classes": 1, "boundary_head": False,
            "output_stride": 16} for a CAM network

    model = build_model("irn", "efficientnet_lite0", {"boundary": "gated"})
    save_model("sess/irn.pth", model, args=args, step=10, extra={"epoch": 1})
    model, ckpt = load_model("sess/irn.pth", "irn", device)       # eval mode, weights loaded strictly

Next to the three fields a checkpoint keeps the flat fields that earlier versions wrote and read ("num_classes",
"backbone", "boundary", "embed_dim", "head_channels", "decoder"), so files written here load in those versions and
files written there load here: without "config" the recipe is read from those fields, and from the arguments the
checkpoint was trained with (``ckpt["args"]``) where even they are missing — exactly as the earlier loaders did. A
file that describes nothing (a bare state dict) is an error that says how to convert it::

    python -m net.zoo --kind irn --backbone efficientnet_lite0 --config '{"boundary": "gated"}' old.pth new.pth
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from misc.torchutils import load_checkpoint, load_weights, save_checkpoint
from net.affinity_net import AffinityNet
from net.cam_net import CAMNet
from net.discriminator import S4GANDiscriminator
from net.irn import IRNet
from net.registry import DEFAULT_BACKBONE, MODEL_KINDS
from net.seg_net import SegNet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Kind:
    """How one kind of network is built, described and found in a checkpoint of any version."""

    model_class: type[nn.Module]
    title: str  # in messages: "a CAM checkpoint"
    weights_flag: str  # the option that names its file
    train_pass: str  # the option of the pass that writes it
    build: Callable[[str | None, dict, str | None], nn.Module]  # (name, config, pretrained) -> module
    describe: Callable[[nn.Module], tuple[str | None, dict]]  # module -> (name, config)
    recorded: Callable[[dict], tuple[str | None, dict]]  # checkpoint without "config" -> (name, config)
    flat_fields: Callable[[str | None, dict], dict]  # the fields earlier versions wrote and read


def _args_of(ckpt: dict) -> dict:
    return ckpt.get("args") or {}


def _cam_recorded(ckpt: dict) -> tuple[str, dict]:
    built, state = _args_of(ckpt), ckpt["state_dict"]
    num_classes = ckpt.get("num_classes") or state["classifier.weight"].shape[0]
    # a network trained with SBNet's boundary loss carries its boundary head (unused by the CAM passes, loaded for
    # strictness)
    return built.get("backbone", DEFAULT_BACKBONE), {
        "num_classes": int(num_classes), "boundary_head": any(k.startswith("boundary_head.") for k in state),
        "output_stride": int(built.get("cam_output_stride", 16))}


def _irn_recorded(ckpt: dict) -> tuple[str, dict]:
    built = _args_of(ckpt)
    return (ckpt.get("backbone") or built.get("backbone", DEFAULT_BACKBONE),
            {"boundary": ckpt.get("boundary") or built.get("irn_boundary", "gated"),
             "stride": int(ckpt.get("stride") or built.get("irn_stride", 4))})


def _aff_recorded(ckpt: dict) -> tuple[str, dict]:
    return (ckpt.get("backbone") or _args_of(ckpt).get("backbone", DEFAULT_BACKBONE),
            {"embed_dim": int(ckpt.get("embed_dim", 128))})


def _seg_recorded(ckpt: dict) -> tuple[str, dict]:
    return ckpt["backbone"], {"num_classes": int(ckpt["num_classes"]),
                              "head_channels": int(ckpt.get("head_channels", 256)),
                              "decoder": ckpt.get("decoder", "deeplab")}


def _disc_recorded(ckpt: dict) -> tuple[None, dict]:
    return None, dict(ckpt.get("discriminator_config") or {"num_classes": int(ckpt["num_classes"])})


def _build_seg(name: str, c: dict, pretrained: str | None) -> nn.Module:
    """A SegNet, or the segmentation half of a CTFA network (decoder "ctfa", written by step/train_ctfa.py)."""
    if c.get("decoder") == "ctfa":
        from net.ctfa_net import CTFASegmenter

        return CTFASegmenter(backbone=name, num_classes=int(c["num_classes"]), pretrained=pretrained,
                             head_channels=int(c.get("head_channels", 256)))
    return SegNet(backbone=name, num_classes=int(c["num_classes"]), pretrained=pretrained,
                  head_channels=int(c.get("head_channels", 256)), decoder=c.get("decoder", "deeplab"))


KINDS: dict[str, Kind] = {
    "cam": Kind(
        CAMNet, "a CAM", "--cam_weights_name", "--train_cam_pass",
        build=lambda name, c, pretrained: CAMNet(
            backbone=name, num_classes=int(c["num_classes"]), pretrained=pretrained,
            boundary_head=bool(c.get("boundary_head", False)), output_stride=int(c.get("output_stride", 16))),
        describe=lambda m: (m.backbone_name, {"num_classes": m.num_classes,
                                              "boundary_head": m.boundary_head is not None,
                                              "output_stride": int(m.backbone.output_stride)}),
        recorded=_cam_recorded,
        flat_fields=lambda name, c: {"num_classes": c["num_classes"]}),
    "irn": Kind(
        IRNet, "an IRN", "--irn_weights_name", "--train_irn_pass",
        build=lambda name, c, pretrained: IRNet(backbone=name, boundary=c.get("boundary", "gated"),
                                                pretrained=pretrained, stride=int(c.get("stride", 4))),
        describe=lambda m: (m.backbone_name, {"boundary": m.boundary_kind, "stride": m.stride}),
        recorded=_irn_recorded,
        flat_fields=lambda name, c: {"boundary": c["boundary"], "backbone": name, "stride": c.get("stride", 4)}),
    "aff": Kind(
        AffinityNet, "an AffinityNet", "--aff_weights_name", "--train_aff_pass",
        build=lambda name, c, pretrained: AffinityNet(backbone=name, pretrained=pretrained,
                                                      embed_dim=int(c.get("embed_dim", 128))),
        describe=lambda m: (m.backbone_name, {"embed_dim": m.embed_dim}),
        recorded=_aff_recorded,
        flat_fields=lambda name, c: {"backbone": name, "embed_dim": c["embed_dim"]}),
    "seg": Kind(
        SegNet, "a segmentation", "--seg_weights_name", "--train_seg_pass",
        build=lambda name, c, pretrained: _build_seg(name, c, pretrained),
        describe=lambda m: (m.backbone_name, {k: v for k, v in m.config.items() if k != "backbone"}),
        recorded=_seg_recorded,
        flat_fields=lambda name, c: {"backbone": name, **c}),
    "disc": Kind(
        S4GANDiscriminator, "an S4GAN discriminator", "--semi_weights_name", "--train_semi_pass",
        build=lambda name, c, pretrained: S4GANDiscriminator(
            int(c["num_classes"]), base_channels=int(c.get("base_channels", 64)),
            dropout=float(c.get("dropout", 0.5))),
        describe=lambda m: (None, dict(m.config)),
        recorded=_disc_recorded,
        flat_fields=lambda name, c: {}),
}
assert tuple(KINDS) == MODEL_KINDS, "net/registry.py MODEL_KINDS must list KINDS"


# --- build ----------------------------------------------------------------------------------------------------------

def pretrained_weights(flag: str | None) -> str | None:
    """--pretrained as build_backbone takes it: 'none' (any case) → None, anything else as given."""
    return None if flag is None or str(flag).lower() == "none" else flag


def build_model(kind: str, name: str | None, config: dict, pretrained: str | None = None) -> nn.Module:
    """A fresh network of ``kind`` on backbone ``name`` with ``config`` (see KINDS); ``pretrained``: the backbone's
    ImageNet weights ('default', a path) or None (random init, e.g. before loading a checkpoint)."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {list(KINDS)}")
    return KINDS[kind].build(name, dict(config), pretrained)


def describe(model: nn.Module) -> tuple[str, str | None, dict]:
    """(kind, name, config) that :func:`build_model` rebuilds ``model``'s architecture from."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    for kind, spec in KINDS.items():
        if type(model) is spec.model_class:
            name, config = spec.describe(model)
            return kind, name, config
    raise TypeError(f"{type(model).__name__} is not a registered network (net/zoo.py KINDS)")


def spec_from_args(kind: str, args: Any, *, num_classes: int | None = None) -> tuple[str | None, dict]:
    """(name, config) of the network a training pass builds from its arguments: the one place where option names
    become constructor keywords."""
    if kind == "cam":
        return args.backbone, {"num_classes": int(num_classes), "boundary_head": args.cam_boundary_loss > 0,
                               "output_stride": int(args.cam_output_stride)}
    if kind == "irn":
        return args.backbone, {"boundary": args.irn_boundary, "stride": int(getattr(args, "irn_stride", 4))}
    if kind == "aff":
        return args.backbone, {"embed_dim": 128}
    if kind == "seg":
        return args.seg_backbone or args.backbone, {"num_classes": int(num_classes),
                                                    "head_channels": int(args.seg_head_channels),
                                                    "decoder": args.seg_decoder}
    if kind == "disc":
        return None, {"num_classes": int(num_classes), "base_channels": int(args.s4gan_disc_channels)}
    raise ValueError(f"unknown model kind {kind!r}; choose one of {list(KINDS)}")


def backbone_of_checkpoint(path: str) -> tuple[str, dict[str, torch.Tensor]]:
    """(registered backbone name, backbone state dict) of the CAM network in ``path``.

    The whole CAM network is rebuilt and loaded, not only its ``backbone.*`` tensors read: building it draws from
    torch's RNG exactly as the pipeline always has, so the fresh IRN / AffinityNet branches built next get the same
    initial weights, and their checkpoints the same bytes, for the same --seed.
    """
    cam, _ = load_model(path, "cam", torch.device("cpu"))
    return cam.backbone_name, cam.backbone.state_dict()


def build_on_cam_backbone(kind: str, config: dict, *, cam_weights: str, backbone: str, pretrained: str | None,
                          who: str) -> nn.Module:
    """IRN or AffinityNet (``kind``) over the trained CAM network's backbone (frozen by the network itself).

    The backbone is the one ``cam_weights`` was trained with (a warning when it is not ``backbone``); when that file
    does not exist, ``backbone`` with ``pretrained`` ImageNet weights, with a warning. ``who`` names the pass in the
    log.
    """
    if os.path.isfile(cam_weights):
        name, state = backbone_of_checkpoint(cam_weights)
        if name != backbone:
            log.warning("%s: %s was trained with backbone %s, not --backbone %s; using %s",
                        who, cam_weights, name, backbone, name)
        model = build_model(kind, name, config, pretrained=None)
        model.backbone.load_state_dict(state)
        log.info("%s: backbone %s from the CAM network %s", who, name, cam_weights)
        return model
    log.warning("%s: CAM weights %s not found; the frozen backbone uses pretrained=%r instead%s", who, cam_weights,
                pretrained, " (boundaries and displacements will be worse)" if kind == "irn" else "")
    return build_model(kind, backbone, config, pretrained=pretrained)


# --- save -----------------------------------------------------------------------------------------------------------

def checkpoint_fields(model: nn.Module) -> dict:
    """The self-description a checkpoint of ``model`` carries: kind, name, config and the flat fields of earlier
    versions."""
    kind, name, config = describe(model)
    return {"kind": kind, **KINDS[kind].flat_fields(name, config), "name": name, "config": config}


def save_model(path: str, model: nn.Module, *, args: Any, step: int, metrics: dict | None = None,
               optimizer: torch.optim.Optimizer | None = None, extra: dict | None = None) -> None:
    """:func:`misc.torchutils.save_checkpoint` (atomic, NaN-refusing, timings aside) with the model's
    self-description; ``extra`` adds the pass's own entries (epoch, class names, ...)."""
    save_checkpoint(path, model=model, args=args, step=step, metrics=metrics, optimizer=optimizer,
                    extra={**(extra or {}), **checkpoint_fields(model)})


# --- load -----------------------------------------------------------------------------------------------------------

def _is_kind(ckpt: dict, kind: str) -> bool:
    if kind == "cam":  # the first CAM checkpoints had no "kind"; their classifier says what they are
        return ckpt.get("kind", "cam") == "cam" and bool(ckpt.get("num_classes")
                                                         or "classifier.weight" in ckpt["state_dict"])
    return ckpt.get("kind") == kind


def convert_hint(kind: str) -> str:
    """The command that turns a bare state dict or a foreign checkpoint into a self-describing one."""
    example = {"cam": '{"num_classes": 1}', "irn": '{"boundary": "gated"}', "aff": '{"embed_dim": 128}',
               "seg": '{"num_classes": 2}', "disc": '{"num_classes": 2}'}[kind]
    return (f"python -m net.zoo --kind {kind} --backbone {DEFAULT_BACKBONE} --config '{example}' OLD.pth NEW.pth "
            f"writes one this toolkit reads")


def checkpoint_spec(ckpt: dict, kind: str) -> tuple[str | None, dict]:
    """(name, config) a checkpoint of ``kind`` was built with: its own "config", else the fields earlier versions
    wrote (see the module docstring)."""
    if isinstance(ckpt.get("config"), dict) and ckpt.get("kind") == kind:
        return ckpt.get("name"), dict(ckpt["config"])
    return KINDS[kind].recorded(ckpt)


def model_from_checkpoint(ckpt: dict, kind: str, *, path: str, state_key: str = "state_dict") -> nn.Module:
    """The network of ``kind`` rebuilt from ``ckpt`` with its weights (``ckpt[state_key]``) loaded strictly, on the
    CPU in training mode; errors name ``path``."""
    spec = KINDS[kind]
    name, config = checkpoint_spec(ckpt, kind)
    try:
        model = spec.build(name, config, None)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: {err}") from err
    state = ckpt if state_key == "state_dict" else {**ckpt, "state_dict": ckpt[state_key]}
    try:
        load_weights(model, state, path=path)
    except RuntimeError as err:  # same keys, other shapes: load_state_dict's own error
        raise ValueError(f"weights in {path} do not fit {spec.model_class.__name__}(backbone={name!r}, "
                         f"{', '.join(f'{k}={v!r}' for k, v in config.items())}): {err}") from err
    return model


def load_model(path: str, kind: str, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """The network of ``kind`` saved in ``path``, rebuilt as it was trained, weights loaded, in eval mode on
    ``device``; and the checkpoint (class names, metrics, ...).

    A file of another kind, or whose weights do not fit the architecture it names, is an error naming the file and
    the option that should name it.
    """
    spec = KINDS[kind]
    ckpt = load_checkpoint(path, map_location="cpu")
    if kind == "cam" and ckpt.get("kind") == "ctfa":  # a CTFA network (step/train_ctfa.py) writes CAMs the same way
        from net.ctfa_net import ctfa_from_checkpoint

        model = ctfa_from_checkpoint(ckpt)
        load_weights(model, ckpt, path=path)
        return model.to(device).eval(), ckpt
    if not _is_kind(ckpt, kind):
        hint = (f"; if it is one from elsewhere or a bare state dict, {convert_hint(kind)}"
                if ckpt.get("kind") is None else "")
        raise ValueError(f"{path} is not {spec.title} checkpoint (kind={ckpt.get('kind')!r}, model class "
                         f"{ckpt.get('model_class')!r}); pass the file written by {spec.train_pass} as "
                         f"{spec.weights_flag}{hint}")
    model = model_from_checkpoint(ckpt, kind, path=path)
    return model.to(device).eval(), ckpt


# --- convert --------------------------------------------------------------------------------------------------------

def convert(source: str, target: str, *, kind: str, name: str | None, config: dict) -> None:
    """Write ``source`` (a bare state dict, or a checkpoint without self-description) as a checkpoint of ``kind``
    that :func:`load_model` reads; the weights must fit ``build_model(kind, name, config)``."""
    ckpt = load_checkpoint(source, map_location="cpu")
    model = build_model(kind, name, config, pretrained=None)
    load_weights(model, ckpt, path=source)
    keep = {k: v for k, v in ckpt.items() if k not in ("state_dict", "args", "step", "metrics", "model_class",
                                                       "optimizer")}
    save_model(target, model, args=ckpt.get("args") or {}, step=int(ckpt.get("step", 0)),
               metrics=ckpt.get("metrics") or {}, extra=keep)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m net.zoo",
                                     description="Convert a bare state dict or an undescribed checkpoint into a "
                                                 "self-describing one (kind, name, config).")
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--kind", required=True, choices=list(KINDS))
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, help="the registered backbone (unused for disc)")
    parser.add_argument("--config", default="{}",
                        help="the constructor's keywords as JSON, e.g. '{\"num_classes\": 1}'")
    ns = parser.parse_args(argv)
    convert(ns.source, ns.target, kind=ns.kind, name=None if ns.kind == "disc" else ns.backbone,
            config=json.loads(ns.config))
    print(f"{ns.target}: {ns.kind} checkpoint of {ns.source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
