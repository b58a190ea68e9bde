"""The seed's README commands parse as written; booleans are typed; bad values are errors."""
import shlex

import pytest

from misc.cli import build_parser, enabled_passes

SEED_STEP2 = """--train_cam_pass True --cam_batch_size 32 --cam_num_epoches 40 --voc12_root Dataset/potsdam
 --train_list cdy12/train_aug.txt --cam_learning_rate 0.001 --cam_weights_name sess/res50_cam_cdy.pth"""
SEED_STEP4 = "--eval_cam_pass True --cam_out_dir result/cam_adv_mask_cdy"
SEED_STEP5 = """--cam_to_ir_label_pass True --conf_fg_thres 0.5 --conf_bg_thres 0.4 --cam_out_dir result/cam_adv_mask_cdy
 --voc12_root Dataset/potsdam --train_list cdy12/train_aug.txt --ir_label_out_dir result/ir_label_cdy"""
SEED_STEP6 = """--train_irn_pass True --irn_batch_size 32 --irn_crop_size 256 --irn_num_epoches 10
 --irn_weights_name sess/res50_irn_cdy.pth --voc12_root Dataset/potsdam --train_list cdy12/train_aug_building.txt
 --ir_label_out_dir result/ir_label_cdy --infer_list cdy12/train_aug_building.txt --irn_learning_rate 0.1"""
SEED_STEP7 = """--make_sem_seg_pass True --eval_sem_seg_pass True --sem_seg_bg_thres 0.4 --cam_out_dir result/cam_adv_mask_cdy
 --sem_seg_out_dir result/sem_seg_cdy --irn_weights_name sess/res50_irn_cdy.pth
 --infer_list cdy12/train_aug_building.txt --voc12_root Dataset/potsdam"""
SEED_STEP3 = """--adv_iter 2 --AD_coeff 7 --AD_stepsize 0.08 --score_th 0.6 --voc12_root Dataset/potsdam
 --train_list cdy12/train_aug.txt --cam_weights_name sess/res50_cam_cdy.pth --cam_out_dir result/cam_adv_mask_cdy"""


def parse(text):
    return build_parser().parse_args(shlex.split(text))


def test_seed_step2_values():
    args = parse(SEED_STEP2)
    assert args.train_cam_pass is True
    assert args.cam_num_epochs == 40 and args.cam_batch_size == 32
    assert args.cam_learning_rate == pytest.approx(0.001)
    assert args.cam_weights_name == "sess/res50_cam_cdy.pth"  # used exactly as given
    assert enabled_passes(args) == ["train_cam"]


def test_seed_steps_4_to_7_enable_their_passes():
    assert enabled_passes(parse(SEED_STEP4)) == ["eval_cam"]
    assert enabled_passes(parse(SEED_STEP5)) == ["cam_to_ir_label"]
    args6 = parse(SEED_STEP6)
    assert enabled_passes(args6) == ["train_irn"] and args6.irn_num_epochs == 10 and args6.irn_crop_size == 256
    args7 = parse(SEED_STEP7)
    assert enabled_passes(args7) == ["make_sem_seg_labels", "eval_sem_seg"]
    assert args7.sem_seg_bg_thres == pytest.approx(0.4)


def test_seed_step3_advcam_flags():
    args = parse(SEED_STEP3)
    assert (args.adv_iter, args.AD_coeff, args.AD_stepsize, args.score_th) == (2, 7.0, 0.08, 0.6)


@pytest.mark.parametrize("text,expected", [("True", True), ("true", True), ("1", True), ("False", False),
                                           ("false", False), ("0", False)])
def test_boolean_spellings(text, expected):
    assert parse(f"--make_cam_pass {text}").make_cam_pass is expected


def test_bare_flag_means_true():
    assert parse("--make_cam_pass").make_cam_pass is True


def test_unparseable_pass_value_is_an_error(capsys):
    with pytest.raises(SystemExit):
        parse("--train_cam_pass Treu")
    assert "expected a boolean" in capsys.readouterr().err


def test_scales_parse():
    assert parse("--cam_scales 1.0,0.5").cam_scales == (1.0, 0.5)
    assert parse("--cam_scales (1.0,0.5,1.5)").cam_scales == (1.0, 0.5, 1.5)


def test_cam_train_scales_parse_to_a_range():
    from step.train_cam import _scale_range
    args = build_parser().parse_args(["--cam_train_scales", "2.0,1.5"])
    assert _scale_range(args.cam_train_scales) == (1.5, 2.0)
    assert _scale_range(build_parser().parse_args([]).cam_train_scales) == (0.7, 1.3)
    assert _scale_range((2.0,)) == (2.0, 2.0)
    with pytest.raises(ValueError, match="cam_train_scales"):
        _scale_range((0.0, 1.0))
