"""Derive image-level labels (cls_labels.npy) and the training lists from the patch masks.

    python write_numpy.py --voc12_root Dataset/dubai --list cdy12/dubai_all.txt \
        --out_list cdy12/train_aug.txt --out_pos_list cdy12/train_aug_building.txt

Reads <voc12_root>/classes.json and SegmentationClassAug/<name>.png; writes cls_labels.npy (structured array, no
pickle), out_list (kept patches) and out_pos_list (patches with a foreground class). The rule lives in
data.labels.image_level_labels.
"""
from __future__ import annotations

import argparse

from data.labels import build_cls_labels, read_name_list
from misc.cli import str2bool
from misc.logutils import setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_argument_group("image-level labels")
    group.add_argument("--voc12_root", default="Dataset/potsdam", type=str)
    group.add_argument("--list", default=None, type=str,
                       help="patch names to label (default: every PNG in SegmentationClassAug)")
    group.add_argument("--out_list", default="cdy12/train_aug.txt", type=str)
    group.add_argument("--out_pos_list", default="cdy12/train_aug_building.txt", type=str)
    group.add_argument("--cls_labels_path", default=None, type=str, help="default: <voc12_root>/cls_labels.npy")
    group.add_argument("--pos_thres", default=0.05, type=float, help="class present if its share >= this")
    group.add_argument("--neg_thres", default=0.0, type=float, help="class absent if its share <= this")
    group.add_argument("--quiet", default=False, type=str2bool, nargs="?", const=True)
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(None, quiet=args.quiet)
    try:
        names = read_name_list(args.list) if args.list else None
        return build_cls_labels(args.voc12_root, names,
                                cls_labels_file=args.cls_labels_path,
                                out_list=args.out_list, out_pos_list=args.out_pos_list, pos_thres=args.pos_thres,
                                neg_thres=args.neg_thres, quiet=args.quiet)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"error: {err}\n")


if __name__ == "__main__":
    main()
