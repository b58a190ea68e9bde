"""Training crops for the inter-pixel relation network: image + IR label at stride 4."""
from __future__ import annotations

import torch

from data.raster_io import read_image
from data.seeded import SeededDataset
from misc import artifacts
from misc.imutils import random_crop, random_dihedral, rescale, to_float
from misc.io import load_png
from misc.artifacts import IGNORE_INDEX
from misc.pair_sampler import downsample_label


class IRNDataset(SeededDataset):
    """(image crop, IR label crop at stride 4) for IRN training.

    The IR label ``<ir_label_dir>/<name>.png`` (uint8: 0 background, 1..K classes, 255 unsure) comes from the
    cam_to_ir_label pass. Augmentation, identical on image and label: a random rescale (label: nearest), a random
    flip / 90° rotation, a random ``crop_size`` crop (padding: image 0, label 255). The label is then reduced to
    stride 4 (misc.pair_sampler.downsample_label); pair labels are built on the device in the training step.
    Randomness comes from (seed, epoch, index), so results do not depend on the number of workers.

    Item: {"name": str, "img": float32 (3, crop, crop) in [0, 1], "label": uint8 (ceil(crop/s), ceil(crop/s))} for
    ``stride`` s (4, or 2 for a stride-2 IRN).
    """

    def __init__(self, voc12_root: str, names: list[str], ir_label_dir: str, crop_size: int,
                 scale_range: tuple[float, float] = (0.7, 1.3), seed: int = 0, stride: int = 4):
        self.voc12_root = voc12_root
        super().__init__(names, seed)
        self.ir_label_dir = ir_label_dir
        self.crop_size = int(crop_size)
        self.scale_range = scale_range
        self.stride = int(stride)  # the IRN's output stride: the label is reduced to it

    def __getitem__(self, index: int) -> dict:
        name = self.names[index]
        rng = self.rng(index)
        image = to_float(read_image(artifacts.image_path(self.voc12_root, name)))  # (H, W, 3)
        label_file = artifacts.ir_label_path(self.ir_label_dir, name)
        label = load_png(label_file)
        if label.ndim != 2 or label.shape != image.shape[:2]:
            raise ValueError(f"IR label {label_file} has shape {label.shape}, expected {image.shape[:2]} "
                             f"(a single-channel label the size of its image; rerun cam_to_ir_label)")
        scale = rng.uniform(*self.scale_range)
        image = rescale(image, scale)
        label = rescale(label, scale, nearest=True)
        image, label = random_dihedral([image, label], rng)
        image, label = random_crop([image, label], self.crop_size, rng, fill_values=[0.0, IGNORE_INDEX])
        return {"name": name, "img": torch.from_numpy(image.transpose(2, 0, 1).copy()),
                "label": torch.from_numpy(downsample_label(label, stride=self.stride))}
