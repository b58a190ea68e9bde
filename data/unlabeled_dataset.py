"""Augmented image crops without labels: the unlabelled half of semi-supervised training (step/train_semi.py).

The augmentation is the one of ``data.seg_dataset.SegmentationDataset`` (random rescale, flip/90° rotation, colour
jitter, random crop), so labelled and unlabelled crops look alike to the network. No label file is read: the
unlabelled tiles' ground truth must not leak into training even when it exists on disk.
"""
from __future__ import annotations

import numpy as np
import torch

from data.raster_io import read_image
from data.seeded import SeededDataset
from misc import artifacts
from misc.imutils import color_jitter, random_crop, random_dihedral, rescale, to_float


class UnlabeledCropDataset(SeededDataset):
    """{'name', 'img': (3, S, S) float [0, 1], 'valid': (S, S) bool (False where the crop is padding)}.

    Randomness comes from (seed, epoch, index), as in SegmentationDataset; call :meth:`set_epoch`.
    """

    def __init__(self, voc12_root: str, names: list[str], *, crop_size: int,
                 scale_range: tuple[float, float] = (0.75, 1.25), seed: int = 0):
        self.voc12_root = voc12_root
        super().__init__(names, seed)
        self.crop_size = crop_size
        self.scale_range = scale_range
        missing = [n for n in self.names if not _has_image(voc12_root, n)]
        if missing:
            raise FileNotFoundError(f"{len(missing)} unlabelled images missing, e.g. "
                                    f"{artifacts.IMAGE_DIR}/{missing[0]}.* under {voc12_root} (fix --voc12_root)")

    def __getitem__(self, index: int) -> dict:
        name = self.names[index]
        rng = self.rng(index)
        image = to_float(read_image(artifacts.image_path(self.voc12_root, name)))  # (H, W, 3)
        valid = np.ones(image.shape[:2], np.uint8)  # (H, W): 1 inside the image, 0 where the crop pads
        scale = rng.uniform(*self.scale_range)
        image, valid = rescale(image, scale), rescale(valid, scale, nearest=True)
        image, valid = random_dihedral([image, valid], rng)
        image = color_jitter(image, rng)
        image, valid = random_crop([image, valid], self.crop_size, rng, fill_values=[0.0, 0])
        return {"name": name, "img": torch.from_numpy(image.transpose(2, 0, 1).copy()),
                "valid": torch.from_numpy(valid.astype(bool))}


def _has_image(voc12_root: str, name: str) -> bool:
    try:
        artifacts.image_path(voc12_root, name)
    except FileNotFoundError:
        return False
    return True
