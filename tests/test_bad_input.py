"""Bad input, nothing lost: every user mistake ends in one line "error: ..." naming the file and the problem (exit
status 2, the traceback only in the log file), and under --skip_bad a bad tile is skipped, logged and counted while
the others are processed."""
import os
import shutil

import pytest
import torch

import run_sample
from misc import artifacts
from misc.io import load_png, save_png, save_text_lines
from misc.robust import BadItems, remove_stale_temp_files, remove_stale_temp_files_of
from tests.tiny_data import make_cam_checkpoint, make_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad_input")
    d = make_dataset(str(tmp))
    d["names"] = open(d["train"]).read().split()
    d["cam_weights"] = make_cam_checkpoint(str(tmp / "sess" / "cam.pth"))
    return d



def copy_root(data, tmp_path) -> str:
    """A private copy of the data set to damage."""
    root = str(tmp_path / "data")
    shutil.copytree(data["root"], root)
    return root


def run(tmp_path, *argv) -> int:
    return run_sample.main(["--quiet", "True", "--device", "cpu", "--log_name", str(tmp_path / "log"),
                            "--cam_scales", "1.0", "--cam_num_overlays", "0", *argv])


def error_line(capsys) -> str:
    """The one stderr line of a failed run (and no traceback on the terminal)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def make_cam_args(data, root, tmp_path, names=None, *, weights=None, out=None):
    """make_cam over ``names`` (default: the whole training list) written to ``<tmp_path>/list.txt``."""
    save_text_lines(str(tmp_path / "list.txt"), names if names is not None else data["names"])
    return ["--make_cam_pass", "True", "--voc12_root", root, "--infer_list", str(tmp_path / "list.txt"),
            "--cam_weights_name", str(weights or data["cam_weights"]), "--cam_out_dir", str(out or tmp_path / "cam")]


# --- images ---------------------------------------------------------------------------------------------------------

def test_missing_image_is_named_and_skipped_under_skip_bad(data, tmp_path, capsys):
    root = copy_root(data, tmp_path)
    gone = data["names"][4]
    os.remove(artifacts.image_path(root, gone))
    assert run(tmp_path, *make_cam_args(data, root, tmp_path)) == 2
    line = error_line(capsys)
    assert gone in line and "not found" in line
    log = (tmp_path / "log.log").read_text()
    assert "Traceback" in log and gone in log  # the details stay in the log file

    assert run(tmp_path, *make_cam_args(data, root, tmp_path), "--skip_bad", "True") == 0
    written = sorted(f[:-4] for f in os.listdir(tmp_path / "cam") if f.endswith(".npz"))
    assert written == sorted(set(data["names"]) - {gone})
    log = (tmp_path / "log.log").read_text()
    assert f"skipped {gone}: image {gone!r} not found" in log
    assert "skipped 1 bad item(s)" in log


def test_truncated_jpeg_is_named_and_skipped_under_skip_bad(data, tmp_path, capsys):
    root = copy_root(data, tmp_path)
    bad = data["names"][2]
    path = artifacts.image_path(root, bad)
    assert path.endswith(".jpg")
    content = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(content[: len(content) * 2 // 3])  # a transfer cut short
    assert run(tmp_path, *make_cam_args(data, root, tmp_path)) == 2
    line = error_line(capsys)
    assert path in line and "corrupt or unreadable" in line

    assert run(tmp_path, *make_cam_args(data, root, tmp_path), "--skip_bad", "True") == 0
    assert not os.path.exists(artifacts.cam_path(str(tmp_path / "cam"), bad))
    assert len([f for f in os.listdir(tmp_path / "cam") if f.endswith(".npz")]) == len(data["names"]) - 1
    assert "skipped 1 bad item(s)" in (tmp_path / "log.log").read_text()


def test_name_without_image_level_label(data, tmp_path, capsys):
    all_names = open(data["all"]).read().split()
    unlabelled = sorted(set(all_names) - set(data["names"]))[0]  # dropped by write_numpy (ambiguous)
    assert run(tmp_path, *make_cam_args(data, data["root"], tmp_path, data["names"][:2] + [unlabelled])) == 2
    line = error_line(capsys)
    assert unlabelled in line and "cls_labels.npy" in line
    assert run(tmp_path, *make_cam_args(data, data["root"], tmp_path, data["names"][:2] + [unlabelled]),
               "--skip_bad", "True") == 0
    assert "skipped 1 bad item(s)" in (tmp_path / "log.log").read_text()


def test_cam_to_ir_label_skips_a_missing_cam(data, tmp_path, capsys):
    names = data["names"][:3]
    cam_dir = tmp_path / "cam"
    assert run(tmp_path, *make_cam_args(data, data["root"], tmp_path, names)) == 0
    os.remove(artifacts.cam_path(str(cam_dir), names[1]))
    argv = ["--cam_to_ir_label_pass", "True", "--voc12_root", data["root"], "--train_list", str(tmp_path / "list.txt"),
            "--cam_out_dir", str(cam_dir), "--ir_label_out_dir", str(tmp_path / "ir")]
    assert run(tmp_path, *argv) == 2
    assert artifacts.cam_path(str(cam_dir), names[1]) in error_line(capsys)
    assert run(tmp_path, *argv, "--skip_bad", "True") == 0
    assert sorted(os.listdir(tmp_path / "ir")) == sorted([f"{names[0]}.png", f"{names[2]}.png",
                                                         "args_cam_to_ir_label.json"])


def test_mask_of_another_size(data, tmp_path, capsys):
    root = copy_root(data, tmp_path)
    names = data["names"][:2]
    assert run(tmp_path, *make_cam_args(data, root, tmp_path, names)) == 0
    mask = artifacts.mask_path(root, names[1])
    save_png(mask, load_png(mask)[:40, :50])
    assert run(tmp_path, "--eval_cam_pass", "True", "--voc12_root", root, "--infer_list", str(tmp_path / "list.txt"),
               "--cam_out_dir", str(tmp_path / "cam")) == 2
    line = error_line(capsys)
    assert mask in line and "50x40" in line and "64x64" in line


# --- lists ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content,problem", [("", "is empty"), ("# only a comment\n\n", "is empty"),
                                             ("a\nb\na\n", "duplicate name 'a' (line 3)")])
def test_bad_lists(data, tmp_path, capsys, content, problem):
    listing = tmp_path / "list.txt"
    listing.write_text(content)
    assert run(tmp_path, "--make_cam_pass", "True", "--voc12_root", data["root"], "--infer_list", str(listing),
               "--cam_weights_name", data["cam_weights"], "--cam_out_dir", str(tmp_path / "cam")) == 2
    line = error_line(capsys)
    assert str(listing) in line and problem in line


def test_missing_list(data, tmp_path, capsys):
    assert run(tmp_path, "--train_cam_pass", "True", "--voc12_root", data["root"],
               "--train_list", str(tmp_path / "nope.txt")) == 2
    assert f"name list not found: {tmp_path / 'nope.txt'}" in error_line(capsys)


def test_training_list_without_positives(data, tmp_path, capsys):
    from data.labels import load_cls_labels

    labels = load_cls_labels(artifacts.cls_labels_path(data["root"]))
    negatives = [n for n in data["names"] if labels[n].max() == 0]
    assert negatives
    save_text_lines(str(tmp_path / "neg.txt"), negatives)
    assert run(tmp_path, "--train_cam_pass", "True", "--voc12_root", data["root"], "--train_list",
               str(tmp_path / "neg.txt"), "--cam_weights_name", str(tmp_path / "cam.pth")) == 2
    line = error_line(capsys)
    assert str(tmp_path / "neg.txt") in line and "no image has a positive label" in line
    assert not os.path.exists(tmp_path / "cam.pth")


# --- training -------------------------------------------------------------------------------------------------------

def test_nan_loss_stops_training_with_a_clear_message(data, tmp_path, capsys, monkeypatch):
    import step.train_cam

    def nan_loss(logits, labels):
        return (logits * float("nan")).mean()  # what a diverged network produces

    monkeypatch.setattr(step.train_cam.F, "multilabel_soft_margin_loss", nan_loss)
    weights = tmp_path / "cam.pth"
    assert run(tmp_path, "--train_cam_pass", "True", "--voc12_root", data["root"], "--train_list", data["train"],
               "--cam_crop_size", "32", "--cam_batch_size", "4", "--cam_num_epochs", "1", "--pretrained", "none",
               "--cam_weights_name", str(weights)) == 2
    line = error_line(capsys)
    assert "train_cam epoch 1 step 0: loss is nan (not finite)" in line
    assert not weights.exists()  # no checkpoint of a broken model


def test_unwritable_output_folder(data, tmp_path, capsys):
    # root may write anywhere, so "unwritable" is a path below a regular file
    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / "afile" / "out"
    assert run(tmp_path, *make_cam_args(data, data["root"], tmp_path, data["names"][:1], out=out)) == 2
    line = error_line(capsys)
    assert f"cannot create output folder '{out}'" in line and "Not a directory" in line

    weights = tmp_path / "afile" / "sess" / "cam.pth"
    assert run(tmp_path, "--train_cam_pass", "True", "--voc12_root", data["root"], "--train_list", data["train"],
               "--cam_weights_name", str(weights), "--pretrained", "none") == 2
    line = error_line(capsys)
    assert "cannot create output folder" in line and str(weights.parent) in line


# --- weights --------------------------------------------------------------------------------------------------------

def test_cam_checkpoint_given_as_irn_weights(data, tmp_path, capsys):
    names = data["names"][:2]
    cam_dir = tmp_path / "cam"
    assert run(tmp_path, *make_cam_args(data, data["root"], tmp_path, names)) == 0
    assert run(tmp_path, "--make_sem_seg_pass", "True", "--voc12_root", data["root"], "--infer_list",
               str(tmp_path / "list.txt"), "--cam_out_dir", str(cam_dir), "--sem_seg_out_dir", str(tmp_path / "sem"),
               "--irn_weights_name", data["cam_weights"], "--skip_bad", "True") == 2
    line = error_line(capsys)  # a wrong model stops the pass even under --skip_bad (it is no one item's fault)
    assert data["cam_weights"] in line and "is not an IRN checkpoint (kind='cam'" in line


def test_other_checkpoints_given_as_cam_weights(data, tmp_path, capsys):
    from misc.cli import build_parser
    from misc.torchutils import save_checkpoint

    irn_like = tmp_path / "irn.pth"
    save_checkpoint(str(irn_like), model=torch.nn.Linear(2, 2), args=build_parser().parse_args([]), step=0,
                    extra={"kind": "irn"})
    assert run(tmp_path, *make_cam_args(data, data["root"], tmp_path, data["names"][:1], weights=irn_like)) == 2
    line = error_line(capsys)
    assert str(irn_like) in line and "is not a CAM checkpoint (kind='irn'" in line

    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(open(data["cam_weights"], "rb").read()[:5000])
    assert run(tmp_path, *make_cam_args(data, data["root"], tmp_path, data["names"][:1], weights=truncated)) == 2
    assert f"cannot read weights file {truncated}" in error_line(capsys)


def test_resume_from_a_resnet50_cam_file_with_another_backbone(data, tmp_path, capsys):
    from misc.cli import build_parser
    from misc.torchutils import save_checkpoint
    from net.cam_net import CAMNet

    weights = tmp_path / "cam_r50.pth"
    built = build_parser().parse_args(["--backbone", "resnet50"])
    save_checkpoint(str(weights), model=CAMNet(backbone="resnet50", num_classes=1, pretrained=None), args=built,
                    step=3, extra={"epoch": 1, "num_classes": 1, "kind": "cam"})
    assert run(tmp_path, "--train_cam_pass", "True", "--voc12_root", data["root"], "--train_list", data["train"],
               "--cam_weights_name", str(weights), "--resume", "True", "--pretrained", "none",
               "--cam_num_epochs", "2") == 2
    line = error_line(capsys)
    assert str(weights) in line and "do not fit CAMNet (it was trained with --backbone resnet50)" in line


# --- the helpers themselves -----------------------------------------------------------------------------------------

def test_bad_items_guard_counts_only_item_errors():
    bad = BadItems("test", skip_bad=True)
    for name, err in [("a", OSError("cannot read a")), ("b", None), ("c", KeyError("no label for c"))]:
        with bad.guard(name):
            if err is not None:
                raise err
    assert bad.skipped == [("a", "cannot read a"), ("c", "no label for c")]
    with pytest.raises(TypeError):  # a bug is never skipped
        with bad.guard("d"):
            raise TypeError("bug")
    with pytest.raises(ValueError):  # an error of the whole pass is never skipped
        with bad.guard("e"), bad.whole_pass():
            raise ValueError("wrong weights")
    with pytest.raises(OSError):  # without --skip_bad nothing is skipped
        with BadItems("test", skip_bad=False).guard("f"):
            raise OSError("x")


def test_stale_temp_files_are_removed_and_nothing_else(tmp_path):
    (tmp_path / "overlays").mkdir()
    keep = ["a.npz", "overlays/a.png", ".hidden", "b.tmp", "sess.pth", ".other.abc.tmp.pth"]
    stale = [".a.x1y2z3.tmp.npz", "overlays/.a.k9_q.tmp.png"]
    for f in keep + stale:
        (tmp_path / f).write_bytes(b"x")
    assert remove_stale_temp_files_of(str(tmp_path / "sess.pth")) == 0
    (tmp_path / ".sess.q1.tmp.pth").write_bytes(b"x")
    assert remove_stale_temp_files_of(str(tmp_path / "sess.pth")) == 1
    assert os.path.exists(tmp_path / ".other.abc.tmp.pth")  # another file's temp is not ours to delete
    assert remove_stale_temp_files(str(tmp_path)) == 3
    left = sorted(os.path.relpath(os.path.join(r, f), tmp_path) for r, _, fs in os.walk(tmp_path) for f in fs)
    assert left == sorted(k for k in keep if k != ".other.abc.tmp.pth")
