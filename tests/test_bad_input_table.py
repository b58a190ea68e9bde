"""The bad-input table: each row is a command (run in-process), the exit code it must end with and a fragment its
one-line error must contain; plus the command-line papercuts (help everywhere, no abbreviations, Ctrl-C)."""
import os
import shutil

import numpy as np
import pytest

import obtain_CAM_masking
import run_sample
import write_numpy
from data import prepare
from misc import artifacts
from misc.io import save_png
from tests.tiny_data import make_cam_checkpoint, make_dataset

ENTRIES = {
    "run": lambda argv: run_sample.main(argv),
    "adv": lambda argv: obtain_CAM_masking.main(argv),
    "prepare": lambda argv: prepare.main(argv),
    "numpy": lambda argv: write_numpy.main(argv),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A prepared data set, a CAM checkpoint, and one damaged copy of each input a row needs."""
    tmp = tmp_path_factory.mktemp("table")
    d = make_dataset(str(tmp))
    d["tmp"] = str(tmp)
    d["weights"] = make_cam_checkpoint(str(tmp / "cam.pth"))
    names = open(d["train"]).read().split()
    (tmp / "latin1.txt").write_bytes(f"{names[0]}\ncaf\xe9\n".encode("latin-1"))

    from data.labels import save_cls_labels

    for folder, labels in (("k2", np.ones((len(names), 2), np.uint8)), ("v3", np.full((len(names), 1), 3, np.uint8))):
        os.makedirs(tmp / folder)
        shutil.copy(artifacts.classes_json_path(d["root"]), tmp / folder / "classes.json")
        table = np.zeros(len(names), dtype=[("name", "U64"), ("labels", "u1", (labels.shape[1],))])
        table["name"], table["labels"] = names, labels
        np.save(tmp / folder / "cls_labels.npy", table)  # written raw: save_cls_labels itself refuses a 3
    save_cls_labels(str(tmp / "ok_labels.npy"), names, np.zeros((len(names), 1), np.uint8))

    corrupt = tmp / "corrupt_root"
    shutil.copytree(d["root"], corrupt)
    bad = artifacts.image_path(str(corrupt), names[1])
    open(bad, "wb").write(b"\xff\xd8 not a jpeg")
    d["corrupt_root"], d["corrupt_image"] = str(corrupt), bad
    (tmp / "one.txt").write_text("\n".join(names[:3]) + "\n")

    grey = tmp / "grey"  # a one-band 0/1 mask given to the dubai colour palette
    save_png(str(grey / "images" / "a.png"), np.full((16, 16, 3), 90, np.uint8))
    save_png(str(grey / "masks" / "a.png"), (np.arange(256).reshape(16, 16) % 2).astype(np.uint8))
    bomb = tmp / "bomb"
    from tests.test_reliability import _png_header_claiming

    os.makedirs(bomb / "images")
    (bomb / "images" / "a.png").write_bytes(_png_header_claiming(100000, 100000))
    save_png(str(bomb / "masks" / "a.png"), np.zeros((4, 4), np.uint8))
    (tmp / "afile").write_text("a file, not a folder")
    return d



RUN = ["--quiet", "True", "--device", "cpu", "--log_name", "{tmp}/log", "--cam_num_overlays", "0",
       "--cam_scales", "1.0"]
MAKE_CAM = ["--make_cam_pass", "True", "--voc12_root", "{root}", "--infer_list", "{train}",
            "--cam_weights_name", "{weights}", "--cam_out_dir", "{tmp}/cam"]
PREP = ["--images", "{raw}", "--masks", "{raw}", "--out_root", "{tmp}/prep", "--quiet"]

# (entry, argv, exit code, fragment of stderr)
TABLE = [
    # typos and abbreviations: a short "did you mean", never 99 lines of usage
    ("run", ["--cam_scale", "1.0", "--make_cam_pass"], 2, "unknown option --cam_scale: did you mean --cam_scales?"),
    ("run", ["--make_cam_pas", "True"], 2, "did you mean --make_cam_pass?"),
    ("run", ["--cam_batchsize", "4", "--train_cam_pass"], 2, "did you mean --cam_batch_size?"),
    ("adv", ["--cam_scale", "1.0"], 2, "did you mean --cam_scales?"),
    ("prepare", ["--patch_sz", "64", *PREP], 2, "did you mean --patch_size?"),
    ("numpy", ["--out_lis", "x.txt"], 2, "did you mean --out_list?"),
    ("run", ["--device", "cpu"], 2, "no pass enabled"),
    ("run", ["--make_cam_pass", "True", "stray"], 2, "unexpected argument stray"),
    # numbers checked at parse time, with their range
    ("run", ["--cam_crop_size", "0", "--train_cam_pass"], 2, "argument --cam_crop_size: must be > 0, got '0'"),
    ("run", ["--cam_num_epochs", "0", "--train_cam_pass"], 2,
     "argument --cam_num_epochs/--cam_num_epoches: must be > 0"),
    ("run", ["--cam_num_epoches", "0", "--train_cam_pass"], 2, "must be > 0"),
    ("run", ["--cam_batch_size", "-4", "--train_cam_pass"], 2, "argument --cam_batch_size: must be > 0"),
    ("run", ["--cam_scales", "0", "--make_cam_pass"], 2, "argument --cam_scales: every scale must be > 0"),
    ("run", ["--cam_scales", "-1", "--make_cam_pass"], 2, "every scale must be > 0"),
    ("run", ["--cam_scales", "1.0,-0.5", "--make_cam_pass"], 2, "every scale must be > 0"),
    ("run", ["--cam_train_scales", "0,1", "--train_cam_pass"], 2, "every scale must be > 0"),
    ("run", ["--conf_fg_thres", "1.5", "--cam_to_ir_label_pass"], 2, "argument --conf_fg_thres: must be in [0, 1]"),
    ("run", ["--sem_seg_bg_thres", "nan", "--make_sem_seg_pass"], 2, "must be in [0, 1], got 'nan'"),
    ("run", ["--irn_num_epochs", "0", "--train_irn_pass"], 2,
     "argument --irn_num_epochs/--irn_num_epoches: must be > 0"),
    ("run", ["--irn_crop_size", "x", "--train_irn_pass"], 2, "argument --irn_crop_size: expected an integer"),
    ("run", ["--predict_window", "0", "--predict_pass"], 2, "argument --predict_window: must be > 0"),
    ("run", ["--cam_learning_rate", "0", "--train_cam_pass"], 2, "argument --cam_learning_rate: must be > 0"),
    ("run", ["--al_ratio", "0", "--select_tiles_pass"], 2, "argument --al_ratio: must be in (0, 1]"),
    ("adv", ["--adv_iter", "-1"], 2, "argument --adv_iter: must be >= 0"),
    ("prepare", [*PREP, "--patch_size", "-1"], 2, "argument --patch_size: must be >= 0"),
    ("prepare", [*PREP, "--min_valid", "2"], 2, "argument --min_valid: must be in [0, 1]"),
    ("numpy", ["--pos_thres", "0"], 2, "argument --pos_thres: must be in (0, 1]"),
    # missing inputs say what is missing and how to create it
    ("run", [*RUN, "--make_cam_pass", "--voc12_root", "{tmp}/nowhere", "--infer_list", "{train}",
             "--cam_weights_name", "{weights}"], 2,
     "data folder {tmp}/nowhere does not exist (--voc12_root: prepare the data folder with "
     "`python -m data.prepare"),
    ("run", [*RUN, "--train_cam_pass", "--voc12_root", "{root}"], 2,
     "name list not found: cdy12/train_aug.txt (--train_list / --infer_list: write it with `python write_numpy.py "
     "--out_list cdy12/train_aug.txt`"),
    ("run", [*RUN, "--make_cam_pass", "--voc12_root", "{root}", "--infer_list", "{train}"], 2,
     "weights file not found: sess/cam.pth (train it first, or fix the path) (--cam_weights_name: train it with "
     "`--train_cam_pass True --cam_weights_name sess/cam.pth`)"),
    ("run", [*RUN, "--eval_cam_pass", "--voc12_root", "{tmp}/nowhere", "--infer_list", "{train}"], 2,
     "data folder {tmp}/nowhere does not exist (--voc12_root: prepare"),
    # files whose content makes no sense
    ("run", [*RUN, *MAKE_CAM[:5], "{tmp}/latin1.txt", *MAKE_CAM[6:]], 2,
     "name list {tmp}/latin1.txt is not UTF-8 text: byte 0xe9 on line 2"),
    ("numpy", ["--voc12_root", "{root}", "--list", "{tmp}/latin1.txt", "--out_list", "{tmp}/o.txt"], 2,
     "is not UTF-8 text: byte 0xe9 on line 2"),
    ("run", [*RUN, *MAKE_CAM, "--cls_labels_path", "{tmp}/k2/cls_labels.npy"], 2,
     "{tmp}/k2/cls_labels.npy has 2 classes per image but {tmp}/k2/classes.json lists 1 foreground classes"),
    ("run", [*RUN, "--train_cam_pass", "--voc12_root", "{root}", "--train_list", "{train}",
             "--cls_labels_path", "{tmp}/v3/cls_labels.npy", "--cam_weights_name", "{tmp}/never.pth"], 2,
     "image-level labels must be 0/1"),
    ("run", [*RUN, *MAKE_CAM[:3], "{corrupt_root}", *MAKE_CAM[4:5], "{tmp}/one.txt", *MAKE_CAM[6:]], 2,
     "corrupt or unreadable image {corrupt_image} (--skip_bad True skips such items, logs and counts them)"),
    ("run", [*RUN, *MAKE_CAM[:3], "{corrupt_root}", *MAKE_CAM[4:5], "{tmp}/one.txt", *MAKE_CAM[6:9],
             "{tmp}/cam_skip", "--skip_bad"], 0, ""),
    # data.prepare: the real cause of a wrong palette, a bomb, an unwritable folder
    ("prepare", [*PREP, "--palette", "isprs"], 2,
     "100 % of its pixels have colours/values unknown to palette 'isprs': palette 'isprs' colours: "
     "impervious_surfaces #FFFFFF, building #0000FF"),
    ("prepare", [*PREP, "--palette", "isprs"], 2, "the mask's most common colours: #FEDD3A"),
    ("prepare", ["--images", "{tmp}/grey", "--masks", "{tmp}/grey", "--out_root", "{tmp}/g", "--quiet"], 2,
     "it is a one-band (grey/index) mask, but palette 'dubai' is a colour palette (try --palette index or binary)"),
    ("prepare", ["--images", "{tmp}/bomb", "--masks", "{tmp}/bomb", "--out_root", "{tmp}/b", "--quiet"], 2,
     "image {tmp}/bomb/images/a.png is too large: its header claims 100000x100000"),
    ("prepare", ["--images", "{raw}", "--masks", "{raw}", "--out_root", "{tmp}/afile/out", "--quiet"], 2,
     "error: cannot create output folder"),
]


def fill(items, world) -> list[str]:
    values = {"tmp": world["tmp"], "root": world["root"], "train": world["train"], "weights": world["weights"],
              "raw": os.path.join(world["tmp"], "raw"), "corrupt_root": world["corrupt_root"],
              "corrupt_image": world["corrupt_image"]}
    return [item.format(**values) for item in items]


def invoke(entry: str, argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = ENTRIES[entry](argv)
    except SystemExit as stop:
        code = stop.code
    return (0 if code is None or isinstance(code, dict) else code), capsys.readouterr().err


def _row_id(row) -> str:
    argv = row[1][len(RUN):] if row[1][:len(RUN)] == RUN else row[1]
    return f"{row[0]}:{' '.join(argv)[:70]}"


@pytest.mark.parametrize("entry,argv,code,fragment", TABLE, ids=[_row_id(r) for r in TABLE])
def test_bad_input_table(world, tmp_path, monkeypatch, capsys, entry, argv, code, fragment):
    monkeypatch.chdir(tmp_path)  # the default paths (Dataset/potsdam, cdy12/..., sess/...) do not exist here
    got, err = invoke(entry, fill(argv, world), capsys)
    assert got == code, err
    assert "Traceback" not in err
    if fragment:
        assert fill([fragment], world)[0] in err
        assert len(err.strip().splitlines()) <= 2, err  # one line (+ the pointer to --help for parse errors)


def test_data_prepare_on_a_full_disk_leaves_no_partial_patch(world, tmp_path, capsys, monkeypatch):
    import misc.io
    from misc.io import is_complete
    from tests.test_reliability import FullDisk

    monkeypatch.setattr(misc.io, "open", FullDisk(allow=5), raising=False)
    out = tmp_path / "out"
    code, err = invoke("prepare", fill(["--images", "{raw}", "--masks", "{raw}", "--quiet"], world)
                       + ["--out_root", str(out)], capsys)
    assert code == 2 and "Traceback" not in err
    assert "cannot write" in err and "no space left on device" in err
    written = [os.path.join(r, f) for r, _, fs in os.walk(out) for f in fs]
    assert len(written) == 5 and all(is_complete(p) for p in written)  # 5 whole files, no partial one


# --- Ctrl-C -----------------------------------------------------------------------------------------------------------

def test_ctrl_c_is_one_line_and_exit_130(world, tmp_path, capsys, monkeypatch):
    import step.make_cam

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(step.make_cam, "run", interrupted)
    code, err = invoke("run", fill([*RUN, *MAKE_CAM], world), capsys)
    assert code == 130 and "Traceback" not in err
    assert err.strip().splitlines() == ["interrupted: make_cam stopped by Ctrl-C; finished artifacts are kept, rerun "
                                        "the same command to continue (training passes: add --resume True)"]
    monkeypatch.setattr(prepare, "prepare", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    code, err = invoke("prepare", fill(PREP, world), capsys)
    assert code == 130 and "Traceback" not in err and len(err.strip().splitlines()) == 1


# --- help texts -------------------------------------------------------------------------------------------------------

PARSERS = {"run_sample.py": lambda: __import__("misc.cli", fromlist=["x"]).build_parser("run_sample.py"),
           "data.prepare": prepare.build_parser, "write_numpy.py": write_numpy.build_parser}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_option_has_help_a_default_and_no_abbreviation(name):
    parser = PARSERS[name]()
    assert parser.allow_abbrev is False
    silent = [a.option_strings[0] for a in parser._actions if a.option_strings and not (a.help or "").strip()]
    assert silent == []
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.dest == "help" or not action.option_strings:
            continue
        shown = formatter._get_help_string(action)  # what --help prints after the option
        if action.required:
            assert shown.endswith("(required)"), shown
        elif action.default not in (None, "") and "default" not in action.help.lower():
            assert "(default: " in shown, (action.option_strings[0], shown)
    text = parser.format_help()
    assert "(default: None)" not in text


def test_help_states_the_ranges():
    from misc.cli import build_parser

    text = " ".join(build_parser("run_sample.py").format_help().split())
    assert "train_cam: square training crop (px) (default: 256; > 0)" in text
    assert "(default: 0.5; in [0, 1])" in text  # --conf_fg_thres
    assert "(default: 2.0,3.0; comma list, each > 0)" in text  # --cam_scales, as it is typed
    assert len(build_parser("run_sample.py").format_usage().splitlines()) == 1  # errors print a short usage
