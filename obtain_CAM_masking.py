"""AdvCAM with a restricting mask (the seed's step 3), e.g.

    python obtain_CAM_masking.py --adv_iter 2 --AD_coeff 7 --AD_stepsize 0.08 --score_th 0.6 \
        --voc12_root Dataset/potsdam --train_list cdy12/train_aug.txt \
        --cam_weights_name sess/res50_cam_cdy.pth --cam_out_dir result/cam_adv_mask_cdy

A thin entry point: the same arguments as run_sample.py with the make_adv_cam pass switched on. As in the seed,
the images processed are those of ``--train_list`` unless ``--infer_list`` is given explicitly.
"""
from __future__ import annotations

import sys

import run_sample


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a == "--infer_list" or a.startswith("--infer_list=") for a in argv):
        for i, a in enumerate(argv):
            if a == "--train_list" and i + 1 < len(argv):
                argv += ["--infer_list", argv[i + 1]]
            elif a.startswith("--train_list="):
                argv += ["--infer_list", a.split("=", 1)[1]]
    return run_sample.main(argv + ["--make_adv_cam_pass", "True"])


if __name__ == "__main__":
    sys.exit(main())
