"""Map whole scenes with a trained segmentation network, e.g.

    python predict.py --predict_input 'scenes/*.tif' --seg_weights_name sess/seg.pth --seg_out_dir result/maps

A thin entry point: the same arguments as run_sample.py with the predict pass (step/predict.py) switched on.
"""
from __future__ import annotations

import sys

import run_sample


def main(argv: list[str] | None = None) -> int:
    return run_sample.main(["--predict_pass", "True", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
