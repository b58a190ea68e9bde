"""(image crop, pixel label) pairs for training the segmentation network on pseudo, ground-truth or mixed labels.

Label sources (``--seg_label_source``):

- ``pseudo``: every image uses the weakly supervised pseudo mask ``<sem_seg_out_dir>/<name>.png``;
- ``gt``: every image uses its ground truth ``<voc12_root>/SegmentationClassAug/<name>.png`` (the fully supervised
  upper bound with the same network and schedule);
- ``mixed``: the few images of ``--seg_pixel_list`` use ground truth, all others pseudo masks (weakly
  semi-supervised, seed 004: N1 pixel-labelled + N2 weakly labelled images).
"""
from __future__ import annotations

import logging
import os

import numpy as np
import torch

from data.raster_io import read_image
from data.seeded import SeededDataset
from misc import artifacts
from misc.imutils import color_jitter, random_crop, random_dihedral, rescale, to_float
from misc.io import load_png

log = logging.getLogger(__name__)

LABEL_SOURCES = ("pseudo", "gt", "mixed")


def label_sources(names: list[str], label_source: str, pixel_names: list[str] | None = None) -> dict[str, str]:
    """{name: "gt" | "pseudo"}: which label file each training image uses."""
    if label_source not in LABEL_SOURCES:
        raise ValueError(f"label source must be one of {LABEL_SOURCES}, got {label_source!r}")
    if label_source != "mixed":
        return {n: label_source for n in names}
    if not pixel_names:
        raise ValueError("--seg_label_source mixed needs --seg_pixel_list (the images with ground-truth masks)")
    pixel = set(pixel_names)
    unused = pixel.difference(names)
    if unused:
        log.warning("%d images of the pixel list are not in the training list and are not used, e.g. %s",
                    len(unused), sorted(unused)[:3])
    return {n: ("gt" if n in pixel else "pseudo") for n in names}


class SegmentationDataset(SeededDataset):
    """Training crops with per-pixel labels: {'name', 'img': (3, S, S) float [0, 1], 'label': (S, S) int64}.

    Labels are 0..num_classes-1 with 255 = ignore; pixels padded by the crop are 255 too. Augmentation (each one
    can be left out through ``augment``): random rescale ("scale"), a random flip/90° rotation ("dihedral": overhead
    imagery has no 'up'), colour jitter ("jitter"); the random crop is always taken. Randomness
    comes from (seed, epoch, index) so results do not depend on the number of workers; call :meth:`set_epoch`.

    Every label file is checked at construction, so a missing pseudo mask stops the pass before training starts,
    with the path it looked for.
    """

    def __init__(self, voc12_root: str, names: list[str], *, num_classes: int, crop_size: int,
                 label_source: str = "pseudo", pseudo_dir: str | None = None, pixel_names: list[str] | None = None,
                 scale_range: tuple[float, float] = (0.75, 1.25),
                 augment: tuple[str, ...] = ("scale", "dihedral", "jitter"), seed: int = 0):
        self.voc12_root = voc12_root
        super().__init__(names, seed)
        self.sources = label_sources(self.names, label_source, pixel_names)
        if pseudo_dir is None and "pseudo" in self.sources.values():
            raise ValueError("pseudo labels requested but no pseudo mask folder (--sem_seg_out_dir) given")
        self.pseudo_dir = pseudo_dir
        self.num_classes = num_classes
        self.crop_size = crop_size
        self.scale_range = scale_range
        self.augment = frozenset(augment)
        missing = [self.label_path(n) for n in self.names if not os.path.isfile(self.label_path(n))]
        if missing:
            hint = ("run make_sem_seg (--make_sem_seg_pass) for these images or fix --sem_seg_out_dir"
                    if any(self.sources[n] == "pseudo" for n in self.names) else "fix --voc12_root")
            raise FileNotFoundError(f"{len(missing)} label files missing, e.g. {missing[0]} ({hint})")

    def label_path(self, name: str) -> str:
        if self.sources[name] == "gt":
            return artifacts.mask_path(self.voc12_root, name)
        return artifacts.sem_seg_path(self.pseudo_dir, name)

    def load_label(self, name: str) -> np.ndarray:
        """uint8 (H, W) label of ``name`` from its source; values other than 0..K-1 and 255 are an error."""
        path = self.label_path(name)
        label = load_png(path)
        if label.ndim != 2:
            raise ValueError(f"{path}: expected a single-channel class-index PNG, got shape {label.shape}")
        bad = (label >= self.num_classes) & (label != artifacts.IGNORE_INDEX)
        if bad.any():
            raise ValueError(f"{path}: label value {int(label[bad][0])} outside 0..{self.num_classes - 1} "
                             f"(and 255 = ignore); does classes.json match these masks?")
        return label

    def __getitem__(self, index: int) -> dict:
        name = self.names[index]
        rng = self.rng(index)
        image = to_float(read_image(artifacts.image_path(self.voc12_root, name)))  # (H, W, 3)
        label = self.load_label(name)  # (H, W)
        if image.shape[:2] != label.shape:
            raise ValueError(f"{name}: image is {image.shape[1]}x{image.shape[0]} but its label "
                             f"{self.label_path(name)} is {label.shape[1]}x{label.shape[0]}")
        if "scale" in self.augment:
            scale = rng.uniform(*self.scale_range)
            image, label = rescale(image, scale), rescale(label, scale, nearest=True)
        if "dihedral" in self.augment:
            image, label = random_dihedral([image, label], rng)
        if "jitter" in self.augment:
            image = color_jitter(image, rng)
        image, label = random_crop([image, label], self.crop_size, rng, fill_values=[0.0, artifacts.IGNORE_INDEX])
        return {"name": name, "img": torch.from_numpy(image.transpose(2, 0, 1).copy()),
                "label": torch.from_numpy(label.astype(np.int64))}
