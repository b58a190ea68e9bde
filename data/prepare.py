"""Tile a folder of scenes and colour masks (or images alone) into a VOC-style patch data set.

    python -m data.prepare --images "/data/dubai_aerial" --masks "/data/dubai_aerial" --palette dubai \
        --fg_classes building --patch_size 256 --out_root Dataset/dubai --list_out cdy12/dubai_all.txt
    python -m data.prepare --images UCMerced_LandUse/Images --classes building --patch_size 0 \
        --out_root Dataset/ucm --list_out cdy12/ucm_all.txt          # no masks: tag the images with write_numpy.py

Reads: images (JPEG/PNG/TIFF) and masks (PNG/TIFF), found recursively under --images/--masks (a folder, a file or a
glob; symlinked folders are followed, a glob may match folders). An image pairs with the mask whose path relative to
its root is the same once the extension, an ``images`` (resp. ``masks``) folder component and the optional
--image_suffix/--mask_suffix are removed: ``Tile 1/images/image_part_001.jpg`` <-> ``Tile 1/masks/image_part_001.png``.
Every scene is read and checked (readable, paired, same size, colours known to the palette) before anything is
written, so a bad scene leaves no partial data set.
Without --masks the class names come from --classes (or --palette/--fg_classes) and the images are kept whole: tags
belong to whole images, so cutting them into patches is refused (unless --tags_per_patch: you tag the patches).
Writes (file names from ``misc.artifacts``): ``<out_root>/JPEGImages/<name>.jpg``,
``<out_root>/SegmentationClassAug/<name>.png`` (uint8: 0 background, 1..K fg classes, 255 ignore; with masks only),
``<out_root>/classes.json`` (with ``sources``: name -> relative source path, for tags) and the sorted name list
--list_out. Every file is written atomically.
"""
from __future__ import annotations

import argparse
import glob
import logging
import os
import re

import numpy as np

from data.palettes import decode_mask, describe_unknown, is_background_free, load_palette, resolve_fg_classes
from data.raster_io import IMAGE_EXTS, MASK_EXTS, read_image, read_image_nodata, read_mask
from misc.artifacts import IGNORE_INDEX, IMAGE_DIR, MASK_DIR, classes_json_path, mask_path
from misc.cli import ArgumentParser, fraction, nonneg_int, positive_int, str2bool
from misc.io import save_jpg, save_json, save_png, save_text_lines
from misc.logutils import progress, setup_logging

logger = logging.getLogger(__name__)

IMAGES_COMPONENT = "images"
MASKS_COMPONENT = "masks"


# --- finding and pairing files ------------------------------------------------------------------------------------

def _list_files(spec: str, exts: tuple[str, ...]) -> tuple[str, list[str]]:
    """(root, files) for a folder (recursive), a single file, or a glob (root = its leading folder without magic)."""
    spec = os.fspath(spec)
    if os.path.isdir(spec):
        root, files = spec, _walk_files(spec)
    elif os.path.isfile(spec):
        root, files = os.path.dirname(spec) or ".", [spec]
    elif glob.has_magic(spec):
        parts = spec.split(os.sep)
        fixed = []
        for part in parts:
            if glob.has_magic(part):
                break
            fixed.append(part)
        root = os.sep.join(fixed) or "."
        files = []
        for match in sorted(glob.glob(spec, recursive=True)):  # a match may be a folder: "Tile */images"
            files += _walk_files(match) if os.path.isdir(match) else [match] if os.path.isfile(match) else []
        files = sorted(dict.fromkeys(files))
    else:
        raise FileNotFoundError(f"no such folder, file or glob match: {spec}")
    return root, [f for f in files if f.lower().endswith(exts)]


def _walk_files(folder: str) -> list[str]:
    """Every non-hidden file under ``folder``, following symlinked folders; a link back to a folder on its own path
    (a loop) is not followed."""
    files = []
    chains = {folder: {os.path.realpath(folder)}}  # folder -> real paths of itself and its ancestors in the walk
    for current, dirs, names in os.walk(folder, followlinks=True):
        chain = chains.pop(current, {os.path.realpath(current)})
        kept = []
        for d in sorted(d for d in dirs if not d.startswith(".")):
            path = os.path.join(current, d)
            real = os.path.realpath(path)
            if real in chain:
                logger.warning("not following %s: it links back to %s (a loop)", path, real)
                continue
            chains[path] = chain | {real}
            kept.append(d)
        dirs[:] = kept
        files += [os.path.join(current, n) for n in sorted(names) if not n.startswith(".")]
    return files


def _pair_key(rel: str, role_component: str, suffix: str) -> str:
    """Relative path without extension, role folder component (images/masks) and file suffix, '/'-joined."""
    parts = rel.replace(os.sep, "/").split("/")
    folders = [p for p in parts[:-1] if p.lower() != role_component]
    stem = os.path.splitext(parts[-1])[0]
    if suffix and stem.endswith(suffix):
        stem = stem[: -len(suffix)]
    return "/".join(folders + [stem])


def _keyed(spec: str, exts: tuple[str, ...], role: str, other: str, suffix: str, same_root: bool
           ) -> tuple[str, dict[str, str]]:
    root, files = _list_files(spec, exts)
    keyed: dict[str, str] = {}
    for path in files:
        rel = os.path.relpath(path, root)
        folders = [p.lower() for p in rel.replace(os.sep, "/").split("/")[:-1]]
        if other in folders or (same_root and role not in folders):
            continue  # the other role's file, when images and masks share a tree
        key = _pair_key(rel, role, suffix)
        if key in keyed:
            raise ValueError(f"ambiguous {role}: {keyed[key]} and {path} both pair as {key!r}")
        keyed[key] = path
    if not keyed:
        hint = f" (with --images and --masks the same folder, files must sit under '{role}/' folders)" \
            if same_root else ""
        raise FileNotFoundError(f"no {role} files ({', '.join(exts)}) found in {spec}{hint}")
    return root, keyed


def find_images(images: str, image_suffix: str = "") -> list[tuple[str, str, None]]:
    """The images alone (no masks): sorted (key, image_path, None), keyed as :func:`find_pairs` keys them."""
    _, image_files = _keyed(images, IMAGE_EXTS, IMAGES_COMPONENT, MASKS_COMPONENT, image_suffix, same_root=False)
    return [(k, image_files[k], None) for k in sorted(image_files)]


def find_pairs(images: str, masks: str, image_suffix: str = "", mask_suffix: str = ""
               ) -> list[tuple[str, str, str]]:
    """Pair images with masks. Returns sorted (key, image_path, mask_path); a missing/ambiguous partner is an error.

    ``key`` is the shared relative path, e.g. ``"Tile 1/image_part_001"``. Masks without an image are logged.
    """
    same_root = (not glob.has_magic(images) and not glob.has_magic(masks)
                 and os.path.realpath(images) == os.path.realpath(masks))
    _, image_files = _keyed(images, IMAGE_EXTS, IMAGES_COMPONENT, MASKS_COMPONENT, image_suffix, same_root)
    _, mask_files = _keyed(masks, MASK_EXTS, MASKS_COMPONENT, IMAGES_COMPONENT, mask_suffix, same_root)
    missing = [image_files[k] for k in sorted(image_files) if k not in mask_files]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"no mask for image {missing[0]}{more}: expected a mask with the same relative "
                                f"path and stem under {masks}")
    orphans = sorted(set(mask_files) - set(image_files))
    if orphans:
        logger.warning("%d masks have no image and are skipped, e.g. %s", len(orphans), mask_files[orphans[0]])
    return [(k, image_files[k], mask_files[k]) for k in sorted(image_files)]


def scene_name(key: str) -> str:
    """A file-system-safe unique name: 'Tile 1/image_part_001' -> 'Tile_1__image_part_001'."""
    parts = [re.sub(r"[^0-9A-Za-z_.-]", "_", p.replace(" ", "_")) for p in key.split("/")]
    return "__".join(parts)


# --- tiling -------------------------------------------------------------------------------------------------------

def window_starts(length: int, patch_size: int, stride: int) -> list[int]:
    """Window starts along one axis; the last window is shifted back to end at the border (no padding).

    A length <= patch_size gives the single window [0] covering the whole axis.
    """
    if length <= patch_size:
        return [0]
    starts = list(range(0, length - patch_size + 1, stride))
    if starts[-1] != length - patch_size:
        starts.append(length - patch_size)
    return starts


def tile_windows(height: int, width: int, patch_size: int, stride: int) -> list[tuple[int, int, int, int]]:
    """(y, x, h, w) windows covering a (height, width) scene; patch_size 0 = the whole scene."""
    if patch_size <= 0:
        return [(0, 0, height, width)]
    ph, pw = min(patch_size, height), min(patch_size, width)
    return [(y, x, ph, pw) for y in window_starts(height, patch_size, stride)
            for x in window_starts(width, patch_size, stride)]


# --- the pass -----------------------------------------------------------------------------------------------------

def prepare(images: str, masks: str | None, palette="dubai", fg_classes=("building",), patch_size: int = 256,
            stride: int | None = None, out_root: str | None = None, list_out: str | None = None, *,
            image_ext: str = "jpg", min_valid: float = 0.5, quiet: bool = False, image_suffix: str = "",
            mask_suffix: str = "", clean: bool = False, jpeg_quality: int = 95, classes: list[str] | None = None,
            tags_per_patch: bool = False) -> dict:
    """Pair, check, decode, tile and write a patch data set; see the module docstring. Returns a summary dict.

    Args:
        masks: the masks (folder, file or glob), or None: images only, labelled later by tags (write_numpy.py).
        palette: a palette name, JSON path or :class:`data.palettes.Palette`.
        fg_classes: foreground class names (label 1..K in this order); None / ["all"] = every non-ignore class.
        classes: without masks, the foreground class names (instead of palette + fg_classes).
        patch_size: square patch side; 0 = keep scenes whole. stride: default patch_size.
        min_valid: drop patches whose share of non-ignore pixels is below this (masks only).
        clean: delete patch files in out_root left over from an earlier run (otherwise only warned about).
        tags_per_patch: without masks, allow cutting images larger than patch_size (you then tag the patches).
    """
    if out_root is None:
        raise ValueError("out_root is required")
    if patch_size < 0:
        raise ValueError(f"patch_size must be >= 0, got {patch_size}")
    stride = patch_size if not stride else stride
    if patch_size and stride <= 0:
        raise ValueError(f"stride must be > 0, got {stride}")
    if patch_size and stride > patch_size:
        logger.warning("stride %d > patch_size %d: pixels between windows are not covered", stride, patch_size)
    if image_ext not in ("jpg", "png"):
        raise ValueError(f"image_ext must be 'jpg' or 'png', got {image_ext!r}")
    if not 0.0 <= min_valid <= 1.0:
        raise ValueError(f"min_valid must be in [0, 1], got {min_valid}")
    palette = load_palette(palette)
    if masks is None and classes:
        fg = [c.strip() for c in classes if c.strip()]
        if not fg or len(set(fg)) != len(fg) or "background" in fg:
            raise ValueError(f"--classes {','.join(classes)}: give distinct foreground class names (background is "
                             f"implicit)")
    else:
        fg = resolve_fg_classes(palette, list(fg_classes) if fg_classes is not None else None)

    if masks is None:
        pairs = find_images(images, image_suffix=image_suffix)
    else:
        pairs = find_pairs(images, masks, image_suffix=image_suffix, mask_suffix=mask_suffix)
    names_by_scene: dict[str, str] = {}
    for key, image_file, _ in pairs:
        name = scene_name(key)
        if name in names_by_scene:
            raise ValueError(f"name collision: {names_by_scene[name]} and {image_file} both become {name!r}")
        names_by_scene[name] = image_file
    masks_root = masks if masks is not None and os.path.isdir(masks) else None
    if masks is None:
        logger.info("%d images found (no masks: label them with write_numpy.py --tags/--class_folders); classes %s",
                    len(pairs), fg)
    else:
        logger.info("%d image/mask pairs found; palette %s; foreground %s", len(pairs), palette.name, fg)
    check_scenes(pairs, palette, fg, patch_size=patch_size, tags_per_patch=tags_per_patch, quiet=quiet)

    written: list[str] = []
    sources: dict[str, str] = {}
    unknown_per_file: dict[str, int] = {}
    total_pixels = unknown_total = dropped = nodata_total = 0
    for key, image_file, mask_file in progress(pairs, desc="scenes", quiet=quiet):
        image, nodata = read_image_nodata(image_file)  # (H, W, 3) uint8, (H, W) bool no-data or None
        scene = scene_name(key)
        sources[scene] = key
        if mask_file is None:  # tags come later, for the whole image (or, with tags_per_patch, for each patch)
            for y, x, h, w in tile_windows(image.shape[0], image.shape[1], patch_size, stride):
                name = f"{scene}__y{y:04d}_x{x:04d}" if patch_size and (h, w) != image.shape[:2] else scene
                _save_image(os.path.join(out_root, IMAGE_DIR, f"{name}.{image_ext}"), image[y:y + h, x:x + w],
                            image_ext, jpeg_quality)
                written.append(name)
            total_pixels += image.shape[0] * image.shape[1]
            continue
        mask = read_mask(mask_file)  # (H, W) or (H, W, 3)
        label, n_unknown = decode_mask(mask, palette, fg)  # (H, W) uint8
        if n_unknown == label.size:  # not one known colour: the wrong palette (or a broken mask), not a tiling matter
            raise ValueError(f"mask {mask_file}: 100 % of its pixels have colours/values unknown to palette "
                             f"{palette.name!r}: {describe_unknown(mask, palette)}")
        if nodata is not None:  # no-data pixels of the image (NaN / nodata value) are ignore in the label
            label[nodata] = IGNORE_INDEX
            nodata_total += int(nodata.sum())
            logger.info("%s: %d no-data pixels -> ignore (%d)", image_file, int(nodata.sum()), IGNORE_INDEX)
        rel_mask = os.path.relpath(mask_file, masks_root) if masks_root else mask_file
        total_pixels += label.size
        unknown_total += n_unknown
        unknown_per_file[rel_mask] = n_unknown
        if n_unknown:
            logger.info("%s: %.1f %% unknown colour (%d pixels) -> ignore (%d)", rel_mask,
                        100.0 * n_unknown / label.size, n_unknown, IGNORE_INDEX)
        for y, x, h, w in tile_windows(label.shape[0], label.shape[1], patch_size, stride):
            patch_label = label[y:y + h, x:x + w]
            if np.count_nonzero(patch_label != IGNORE_INDEX) < min_valid * patch_label.size:
                dropped += 1
                continue
            name = f"{scene}__y{y:04d}_x{x:04d}" if patch_size else scene
            patch_image = image[y:y + h, x:x + w]
            _save_image(os.path.join(out_root, IMAGE_DIR, f"{name}.{image_ext}"), patch_image, image_ext, jpeg_quality)
            save_png(mask_path(out_root, name), np.ascontiguousarray(patch_label))
            written.append(name)
    if not written:
        share = 100.0 * unknown_total / max(total_pixels, 1)
        cause = (f"{share:.1f} % of the mask pixels have colours unknown to palette {palette.name!r} (is --palette "
                 f"right?), and" if share >= 50 else "")
        raise ValueError(f"no patch kept out of {len(pairs)} scenes: {cause} every patch has less than --min_valid "
                         f"({min_valid}) of valid (non-ignore) pixels")
    written.sort()

    stale = _stale_files(out_root, set(written), image_ext)
    if stale:
        if clean:
            for path in stale:
                os.remove(path)
            logger.info("removed %d patch files left over from an earlier run", len(stale))
        else:
            logger.warning("%d files in %s are not part of this run (an earlier run?), e.g. %s; the list file is "
                           "authoritative, or re-run with --clean", len(stale), out_root, stale[0])

    classes = ["background"] + fg
    save_json(classes_json_path(out_root), {
        "classes": classes, "ignore_index": IGNORE_INDEX, "palette": palette.name if masks is not None else None,
        "palette_classes": palette.class_names if masks is not None else None, "fg_classes": fg,
        "masks": masks is not None,
        "background_free": is_background_free(palette, fg) if masks is not None else False,
        "source_images": os.path.abspath(images), "source_masks": os.path.abspath(masks) if masks else None,
        "patch_size": patch_size, "stride": stride if patch_size else 0, "image_ext": image_ext,
        "min_valid": min_valid, "num_scenes": len(pairs), "num_patches": len(written), "sources": sources})
    if list_out:
        save_text_lines(list_out, written)

    share = 100.0 * unknown_total / max(total_pixels, 1)
    if masks is None:
        logger.info("%d images -> %d images in %s, no masks; next: write_numpy.py --voc12_root %s --tags CSV (or "
                    "--class_folders)", len(pairs), len(written), out_root, out_root)
    else:
        logger.info("%d scenes -> %d patches in %s (%d dropped below min_valid %.2f); unknown colour: %d pixels "
                    "(%.2f %%) -> ignore; image no-data: %d pixels -> ignore", len(pairs), len(written), out_root,
                    dropped, min_valid, unknown_total, share, nodata_total)
    return {"num_scenes": len(pairs), "num_patches": len(written), "num_dropped_min_valid": dropped,
            "unknown_pixels": unknown_total, "nodata_pixels": nodata_total, "total_pixels": total_pixels,
            "unknown_per_file": unknown_per_file,
            "names": written, "classes": classes, "out_root": out_root, "list_out": list_out,
            "classes_json": classes_json_path(out_root)}


def _save_image(path: str, image: np.ndarray, image_ext: str, jpeg_quality: int) -> None:
    if image_ext == "jpg":
        save_jpg(path, image, quality=jpeg_quality)
    else:
        save_png(path, image)


def check_scenes(pairs: list[tuple[str, str, str | None]], palette, fg: list[str], *, patch_size: int,
                 tags_per_patch: bool = False, quiet: bool = False) -> None:
    """Read every scene before anything is written: each image (and mask) must decode, a mask must have its
    image's size and hold at least one colour of the palette; without masks an image may not be larger than
    ``patch_size`` (tags describe whole images). Raises ValueError naming the file (all oversized images at once)."""
    too_large = []
    for _key, image_file, mask_file in progress(pairs, desc="checking scenes", quiet=quiet):
        image = read_image(image_file)  # (H, W, 3) uint8
        if mask_file is None:
            if patch_size and max(image.shape[:2]) > patch_size and not tags_per_patch:
                too_large.append(f"{image_file} ({image.shape[1]}x{image.shape[0]})")
            continue
        mask = read_mask(mask_file)
        if image.shape[:2] != mask.shape[:2]:
            raise ValueError(f"size mismatch: image {image_file} is {image.shape[1]}x{image.shape[0]} but mask "
                             f"{mask_file} is {mask.shape[1]}x{mask.shape[0]} (width x height)")
        label, n_unknown = decode_mask(mask, palette, fg)
        if label.size and n_unknown == label.size:
            raise ValueError(f"mask {mask_file}: 100 % of its pixels have colours/values unknown to palette "
                             f"{palette.name!r}: {describe_unknown(mask, palette)} (is --palette right?)")
    if too_large:
        more = f" and {len(too_large) - 1} more" if len(too_large) > 1 else ""
        raise ValueError(f"without masks the images are kept whole, but {too_large[0]}{more} "
                         f"{'are' if more else 'is'} larger than "
                         f"--patch_size {patch_size}: an image-level tag says what the whole image contains, not "
                         f"what each patch cut from it contains (a patch may miss the tagged building). Use "
                         f"--patch_size 0 (or at least the image size), or cut and tag the patches yourself "
                         f"(--tags_per_patch True, then tag the listed patch names)")


def _stale_files(out_root: str, names: set[str], image_ext: str) -> list[str]:
    stale = []
    for folder, ext in ((IMAGE_DIR, f".{image_ext}"), (MASK_DIR, ".png")):
        path = os.path.join(out_root, folder)
        if os.path.isdir(path):
            stale += sorted(os.path.join(path, f) for f in os.listdir(path)
                            if f.endswith(ext) and not f.startswith(".") and f[: -len(ext)] not in names)
    return stale


# --- command line -------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m data.prepare", description=__doc__.split("\n\n")[0])
    src = parser.add_argument_group("sources")
    src.add_argument("--images", required=True, type=str, help="folder (recursive), file or glob of images")
    src.add_argument("--masks", default=None, type=str,
                     help="folder (recursive), file or glob of masks; without it: images only, tagged later with "
                          "write_numpy.py --tags/--class_folders")
    src.add_argument("--image_suffix", default="", type=str, help="stem suffix dropped for pairing, e.g. _RGB")
    src.add_argument("--mask_suffix", default="", type=str, help="stem suffix dropped for pairing, e.g. _label")
    src.add_argument("--palette", default="dubai", type=str, help="dubai|isprs|binary|index[:names]|<file.json>")
    src.add_argument("--fg_classes", default="building", type=str, help="comma list, or 'all' (land cover)")
    src.add_argument("--classes", default=None, type=str,
                     help="without --masks: the foreground class names, comma list (instead of --palette/--fg_classes)")
    tiling = parser.add_argument_group("tiling")
    tiling.add_argument("--patch_size", default=256, type=nonneg_int, help="0 = keep scenes whole")
    tiling.add_argument("--stride", default=None, type=positive_int, help="default: patch_size")
    tiling.add_argument("--min_valid", default=0.5, type=fraction, help="min share of non-ignore pixels per patch")
    tiling.add_argument("--tags_per_patch", default=False, type=str2bool, nargs="?", const=True,
                        help="without --masks: cut images larger than --patch_size anyway (you will tag each patch)")
    out = parser.add_argument_group("output")
    out.add_argument("--out_root", required=True, type=str, help="e.g. Dataset/dubai")
    out.add_argument("--list_out", default=None, type=str, help="list of all patch names, e.g. cdy12/dubai_all.txt")
    out.add_argument("--image_ext", default="jpg", choices=("jpg", "png"), help="format of the image patches")
    out.add_argument("--clean", default=False, type=str2bool, nargs="?", const=True,
                     help="delete patch files of an earlier run that this run did not write")
    out.add_argument("--quiet", default=False, type=str2bool, nargs="?", const=True, help="warnings only")
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(None, quiet=args.quiet)
    fg = [c.strip() for c in args.fg_classes.split(",") if c.strip()]
    try:
        return prepare(args.images, args.masks, args.palette, fg, args.patch_size, args.stride, args.out_root,
                       args.list_out, image_ext=args.image_ext, min_valid=args.min_valid, quiet=args.quiet,
                       image_suffix=args.image_suffix, mask_suffix=args.mask_suffix, clean=args.clean,
                       classes=args.classes.split(",") if args.classes else None, tags_per_patch=args.tags_per_patch)
    except (ValueError, OSError) as err:  # OSError: a read-only or full output folder (misc.io.WriteError)
        parser.exit(2, f"error: {err}\n")
    except KeyboardInterrupt:
        parser.exit(130, "interrupted (Ctrl-C); rerun the same command to prepare the data set again\n")


if __name__ == "__main__":
    main()
