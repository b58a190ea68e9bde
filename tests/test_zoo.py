"""net/zoo.py: every kind of network saved and loaded back gives the same outputs; older checkpoints still load."""
from __future__ import annotations

import pytest
import torch

from misc.torchutils import load_checkpoint, save_checkpoint
from net import zoo
from net.registry import DEFAULT_BACKBONE

# (kind, name, config) small enough for a CPU test
SPECS = [
    ("cam", DEFAULT_BACKBONE, {"num_classes": 2, "boundary_head": True, "output_stride": 8}),
    ("irn", DEFAULT_BACKBONE, {"boundary": "plain", "stride": 2}),
    ("aff", DEFAULT_BACKBONE, {"embed_dim": 16}),
    ("seg", DEFAULT_BACKBONE, {"num_classes": 3, "head_channels": 16, "decoder": "fpn"}),
    ("disc", None, {"num_classes": 3, "base_channels": 4, "dropout": 0.5}),
]


def _outputs(model: torch.nn.Module, kind: str) -> list[torch.Tensor]:
    torch.manual_seed(1)
    x = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        out = model(x, torch.rand(1, 3, 48, 64)) if kind == "disc" else model(x)
    return list(out) if isinstance(out, tuple) else [out]


@pytest.mark.parametrize("kind,name,config", SPECS, ids=[s[0] for s in SPECS])
def test_save_then_load_rebuilds_the_same_network(tmp_path, kind, name, config):
    torch.manual_seed(0)
    model = zoo.build_model(kind, name, config).eval()
    path = str(tmp_path / f"{kind}.pth")
    zoo.save_model(path, model, args={"backbone": "resnet50"}, step=3, extra={"epoch": 1})
    ckpt = load_checkpoint(path)
    assert (ckpt["kind"], ckpt["name"], ckpt["config"]) == (kind, name, config)  # it describes itself
    assert ckpt["epoch"] == 1 and ckpt["step"] == 3
    assert zoo.describe(model) == (kind, name, config)
    loaded = zoo.model_from_checkpoint(ckpt, kind, path=path).eval()
    if kind != "disc":  # the discriminator lives inside a train_semi checkpoint; the others have their own file
        loaded, again = zoo.load_model(path, kind)
        assert not loaded.training and again["kind"] == kind
    for a, b in zip(_outputs(model, kind), _outputs(loaded, kind)):
        assert torch.equal(a, b)


def test_the_flat_fields_of_earlier_versions_are_still_written(tmp_path):
    model = zoo.build_model("irn", DEFAULT_BACKBONE, {"boundary": "gated"})
    fields = zoo.checkpoint_fields(model)
    assert fields["boundary"] == "gated" and fields["backbone"] == DEFAULT_BACKBONE  # what older loaders read
    seg = zoo.build_model("seg", DEFAULT_BACKBONE, {"num_classes": 2, "head_channels": 16, "decoder": "deeplab"})
    assert {k: zoo.checkpoint_fields(seg)[k] for k in ("backbone", "num_classes", "head_channels", "decoder")} == \
        {"backbone": DEFAULT_BACKBONE, "num_classes": 2, "head_channels": 16, "decoder": "deeplab"}


def test_checkpoints_of_earlier_versions_load(tmp_path):
    # CAM: no "kind", only the arguments it was trained with (the first CAM checkpoints)
    torch.manual_seed(0)
    cam = zoo.build_model("cam", DEFAULT_BACKBONE, {"num_classes": 2, "boundary_head": False, "output_stride": 8})
    path = str(tmp_path / "cam_old.pth")
    save_checkpoint(path, model=cam, args={"backbone": DEFAULT_BACKBONE, "cam_output_stride": 8}, step=0)
    loaded, _ = zoo.load_model(path, "cam")
    assert zoo.describe(loaded) == zoo.describe(cam)
    assert torch.equal(_outputs(loaded.eval(), "cam")[0], _outputs(cam.eval(), "cam")[0])
    # IRN: kind and the flat fields, no "config"
    irn = zoo.build_model("irn", DEFAULT_BACKBONE, {"boundary": "plain"})
    path = str(tmp_path / "irn_old.pth")
    save_checkpoint(path, model=irn, args={}, step=0, extra={"kind": "irn", "boundary": "plain",
                                                             "backbone": DEFAULT_BACKBONE})
    assert zoo.load_model(path, "irn")[0].boundary_kind == "plain"


def test_a_bare_state_dict_says_how_to_convert_it(tmp_path):
    irn = zoo.build_model("irn", DEFAULT_BACKBONE, {"boundary": "gated"})
    bare = str(tmp_path / "bare.pth")
    torch.save(irn.state_dict(), bare)
    with pytest.raises(ValueError, match="not an IRN checkpoint.*python -m net.zoo --kind irn"):
        zoo.load_model(bare, "irn")
    converted = str(tmp_path / "converted.pth")
    assert zoo.main(["--kind", "irn", "--backbone", DEFAULT_BACKBONE, "--config", '{"boundary": "gated"}', bare,
                     converted]) == 0
    loaded, ckpt = zoo.load_model(converted, "irn")
    assert ckpt["config"] == {"boundary": "gated", "stride": 4}
    assert all(torch.equal(v, irn.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_other_kinds_are_refused_with_the_option_to_use(tmp_path):
    seg = zoo.build_model("seg", DEFAULT_BACKBONE, {"num_classes": 2, "head_channels": 16, "decoder": "deeplab"})
    path = str(tmp_path / "seg.pth")
    zoo.save_model(path, seg, args={}, step=0)
    with pytest.raises(ValueError, match=r"seg.pth is not a CAM checkpoint \(kind='seg'.*--cam_weights_name"):
        zoo.load_model(path, "cam")
    with pytest.raises(ValueError, match="unknown model kind"):
        zoo.build_model("vit", DEFAULT_BACKBONE, {})


def test_registry_names_are_what_the_modules_implement():
    from misc import cli
    from net import registry
    from net.backbones import BACKBONES
    from net.irn import BOUNDARY_BRANCHES
    from net.seg_net import DECODERS

    assert set(registry.BACKBONE_NAMES) == set(BACKBONES) and registry.DEFAULT_BACKBONE in BACKBONES
    assert tuple(BOUNDARY_BRANCHES) == registry.IRN_BOUNDARIES and DECODERS == registry.SEG_DECODERS
    assert tuple(zoo.KINDS) == registry.MODEL_KINDS
    parser = cli.build_parser()
    choices = {a.dest: a.choices for a in parser._actions if a.choices}
    assert set(choices["backbone"]) == set(BACKBONES) and set(choices["seg_backbone"]) == set(BACKBONES)
    assert tuple(choices["irn_boundary"]) == registry.IRN_BOUNDARIES
    assert tuple(choices["rw_method"]) == registry.RW_METHODS
    assert tuple(choices["semi_method"]) == registry.SEMI_METHODS
    assert parser.get_default("backbone") == registry.DEFAULT_BACKBONE
