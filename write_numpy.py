"""Image-level labels (cls_labels.npy) and the training lists, from the patch masks or from tags.

    python write_numpy.py --voc12_root Dataset/dubai --train_list cdy12/dubai_all.txt \
        --out_list cdy12/train_aug.txt --out_pos_list cdy12/train_aug_building.txt
    python write_numpy.py --voc12_root Dataset/mine --tags tags.csv          # image,classes / image,<class>,...
    python write_numpy.py --voc12_root Dataset/ucm --class_folders buildings:building denseresidential:building \
        forest: agricultural:

From masks: reads <voc12_root>/classes.json and SegmentationClassAug/<name>.png (rule: data.labels.image_level_labels).
From tags (no masks needed): --tags CSV or --class_folders (folder:class1;class2 pairs or a JSON file); every image of
the list must be tagged. Writes cls_labels.npy (structured array, no pickle), out_list (kept images) and out_pos_list
(images with a foreground class).
"""
from __future__ import annotations

import argparse

from data.labels import build_cls_labels, build_cls_labels_from_tags, read_name_list
from misc.cli import ArgumentParser, fraction, open_fraction, str2bool
from misc.logutils import setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="write_numpy.py", description=__doc__.split("\n\n")[0])
    group = parser.add_argument_group("image-level labels")
    group.add_argument("--voc12_root", default="Dataset/potsdam", type=str,
                       help="data folder made by `python -m data.prepare --out_root ...`")
    group.add_argument("--list", "--train_list", dest="list", default=None, type=str,
                       help="names to label (default: every PNG in SegmentationClassAug, or with tags every image)")
    group.add_argument("--out_list", default="cdy12/train_aug.txt", type=str, help="kept patches (the --train_list)")
    group.add_argument("--out_pos_list", default="cdy12/train_aug_building.txt", type=str,
                       help="kept patches with a foreground class (train_irn's --train_list)")
    group.add_argument("--cls_labels_path", default=None, type=str, help="default: <voc12_root>/cls_labels.npy")
    group.add_argument("--pos_thres", default=0.05, type=open_fraction,
                       help="masks: class present if its share >= this")
    group.add_argument("--neg_thres", default=0.0, type=fraction, help="masks: class absent if its share <= this")
    tags = parser.add_argument_group("tags instead of masks")
    tags.add_argument("--tags", default=None, type=str,
                      help="CSV of image-level tags: header 'image,classes' with ';'-separated class names, or "
                           "'image,<class 1>,<class 2>,...' with 0/1 columns; image = file name, relative path or "
                           "data-set name")
    tags.add_argument("--class_folders", default=None, nargs="+", type=str,
                      help="folder-per-class layout: 'folder:class1;class2' pairs ('forest:' = no class) or a JSON "
                           "file {folder: [classes]}")
    group.add_argument("--quiet", default=False, type=str2bool, nargs="?", const=True, help="warnings only")
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(None, quiet=args.quiet)
    try:
        names = read_name_list(args.list) if args.list else None
        if args.tags or args.class_folders:
            return build_cls_labels_from_tags(args.voc12_root, names, tags_csv=args.tags,
                                              class_folders=args.class_folders, cls_labels_file=args.cls_labels_path,
                                              out_list=args.out_list, out_pos_list=args.out_pos_list)
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
