"""Datasets over the patch folder: image-level labels for CAM training, plain images for inference."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from data.raster_io import read_image
from data.seeded import SeededDataset
from misc import artifacts
from misc.imutils import color_jitter, random_crop, random_dihedral, rescale, to_float


class ClassificationDataset(SeededDataset):
    """(image crop, multi-hot label) pairs for training the CAM classifier.

    Augmentation: random rescale, a random flip/rotation (overhead imagery has no 'up'), colour jitter and a
    random ``crop_size`` crop. Randomness comes from (seed, epoch, index) so that results do not depend on the
    number of workers; call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, voc12_root: str, names: list[str], cls_labels: dict[str, np.ndarray], crop_size: int,
                 scale_range: tuple[float, float] = (0.7, 1.3), seed: int = 0):
        missing = [n for n in names if n not in cls_labels]
        if missing:
            raise KeyError(f"{len(missing)} images of the list have no image-level label in cls_labels.npy, "
                           f"e.g. {missing[:3]} (rerun write_numpy.py for this list)")
        self.voc12_root = voc12_root
        super().__init__(names, seed)
        self.labels = cls_labels
        self.crop_size = crop_size
        self.scale_range = scale_range

    def __getitem__(self, index: int) -> dict:
        name = self.names[index]
        rng = self.rng(index)
        image = to_float(read_image(artifacts.image_path(self.voc12_root, name)))
        image = rescale(image, rng.uniform(*self.scale_range))
        (image,) = random_dihedral([image], rng)
        image = color_jitter(image, rng)
        (image,) = random_crop([image], self.crop_size, rng, fill_values=[0.0])
        return {"name": name, "img": torch.from_numpy(image.transpose(2, 0, 1).copy()),
                "label": torch.from_numpy(np.asarray(self.labels[name], np.float32))}

