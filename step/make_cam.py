"""Pass make_cam: multi-scale, flip-augmented class activation maps for every image of --infer_list.

Reads:  --cam_weights_name, --infer_list, <voc12_root>/JPEGImages, cls_labels.npy (which classes are present)
Writes: <cam_out_dir>/<name>.npz (keys, cam at stride 4, high_res at full size; see misc/artifacts.py),
        <cam_out_dir>/overlays/<name>.png for the first --cam_num_overlays images, args_make_cam.json.
Items whose .npz already exists are skipped unless --overwrite (a killed run resumes where it stopped); under
--skip_bad an unreadable image or a name without an image-level label is logged, counted and skipped.
"""
from __future__ import annotations

import logging

from data.labels import load_class_names
from data.raster_io import read_image
from misc import artifacts, dist
from misc.cam_maps import multiscale_cams, present_classes, save_cam_artifact
from misc.item_pass import for_each_item, start_cam_pass

log = logging.getLogger(__name__)


def run(args) -> None:
    names, cls_labels, model, overlay_names, todo = start_cam_pass(args, "make_cam")
    log.info("make_cam: %d images to do (%d already done), scales %s", len(todo),
             len(dist.shard(names)) - len(todo), args.cam_scales)
    class_names = load_class_names(args.voc12_root) if overlay_names else None

    def one(name: str) -> None:
        keys = present_classes(cls_labels, name)
        image = read_image(artifacts.image_path(args.voc12_root, name))
        strided, high = multiscale_cams(model, image, args.cam_scales)
        save_cam_artifact(args.cam_out_dir, name, keys, strided, high,
                          overlay_image=image if name in overlay_names else None, class_names=class_names)

    for_each_item(todo, one, pass_name="make_cam", skip_bad=args.skip_bad)
    log.info("make_cam: CAMs in %s", args.cam_out_dir)
