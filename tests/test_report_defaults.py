"""The report pass finds a run's outputs from the arguments recorded next to them, and refuses an empty page."""
import json
import os

import pytest

import run_sample
from misc import artifacts


def test_report_refuses_an_empty_page(tmp_path):
    rc = run_sample.main(["--report_pass", "True", "--cam_out_dir", str(tmp_path / "no_cam"),
                          "--sem_seg_out_dir", str(tmp_path / "no_sem"), "--seg_out_dir", str(tmp_path / "no_seg"),
                          "--ins_seg_out_dir", str(tmp_path / "no_ins"), "--report_path", str(tmp_path / "r.html"),
                          "--quiet", "True", "--log_name", str(tmp_path / "log")])
    assert rc != 0
    assert not os.path.exists(tmp_path / "r.html")


def test_report_takes_the_data_root_and_list_from_the_recorded_args(tmp_path):
    from step.make_report import fill_from_recorded_args
    from misc.cli import build_parser

    root, cam = tmp_path / "data", tmp_path / "cam"
    root.mkdir()
    cam.mkdir()
    (tmp_path / "list.txt").write_text("a\n")
    (cam / "args_make_cam.json").write_text(json.dumps({"voc12_root": str(root),
                                                        "infer_list": str(tmp_path / "list.txt")}))
    args = build_parser().parse_args(["--cam_out_dir", str(cam), "--voc12_root", str(tmp_path / "missing")])
    fill_from_recorded_args(args)
    assert args.voc12_root == str(root) and args.eval_list == str(tmp_path / "list.txt")
    # an existing --voc12_root given by the user is kept
    other = tmp_path / "other"
    other.mkdir()
    args = build_parser().parse_args(["--cam_out_dir", str(cam), "--voc12_root", str(other)])
    fill_from_recorded_args(args)
    assert args.voc12_root == str(other)
    assert artifacts.args_json_path(str(cam), "make_cam").endswith("args_make_cam.json")
