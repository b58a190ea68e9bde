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
from misc.cli import ArgumentParser, fraction, open_fraction, str2bool
from misc.logutils import setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="write_numpy.py", description=__doc__.split("\n\n")[0])
    group = parser.add_argument_group("image-level labels")
    group.add_argument("--voc12_root", default="Dataset/potsdam", type=str,
                       help="data folder made by `python -m data.prepare --out_root ...`")
    group.add_argument("--list", default=None, type=str,
                       help="patch names to label (default: every PNG in SegmentationClassAug)")
    group.add_argument("--out_list", default="cdy12/train_aug.txt", type=str, help="kept patches (the --train_list)")
    group.add_argument("--out_pos_list", default="cdy12/train_aug_building.txt", type=str,
                       help="kept patches with a foreground class (train_irn's --train_list)")
    group.add_argument("--cls_labels_path", default=None, type=str, help="default: <voc12_root>/cls_labels.npy")
    group.add_argument("--pos_thres", default=0.05, type=open_fraction, help="class present if its share >= this")
    group.add_argument("--neg_thres", default=0.0, type=fraction, help="class absent if its share <= this")
    group.add_argument("--quiet", default=False, type=str2bool, nargs="?", const=True, help="warnings only")
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
    except (ValueError, OSError) as err:  # OSError: an unwritable or full output folder (misc.io.WriteError)
        parser.exit(2, f"error: {err}\n")
    except KeyboardInterrupt:
        parser.exit(130, "interrupted (Ctrl-C); rerun the same command\n")


if __name__ == "__main__":
    main()
