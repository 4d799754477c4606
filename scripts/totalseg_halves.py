"""Split TotalSegmentator's example CT crop into a training and a validation volume for 3D segmentation.

The crop (``ct/volumes/totalseg_example_ct_crop.nii.gz``, 122 x 101 x 30 voxels at 3 mm, RAS) has one
labelled volume. Its 30 axial slices are split into the inferior half (slices 0-14: training) and the superior
half (15-29: validation), both keeping the crop's affine shifted to their first slice, and TotalSegmentator's
117 labels are reduced to four classes: 0 background, 1 liver (TotalSegmentator v2 id 5), 2 spleen (1),
3 kidneys (2 right + 3 left). Written in ``zoo finetune``'s NIfTI-pairs layout::

    OUT/train/images/crop_inferior.nii.gz   OUT/train/labels/crop_inferior.nii.gz
    OUT/val/images/crop_superior.nii.gz     OUT/val/labels/crop_superior.nii.gz

Usage: ``python scripts/totalseg_halves.py OUT`` (reads ``$ZOO_DATA_DIR``, default ``../shared/data``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from zoo.data.paths import data_path  # noqa: E402

CLASSES = {"liver": (5,), "spleen": (1,), "kidneys": (2, 3)}  # TotalSegmentator v2 label ids
SPLIT = {"train": ("crop_inferior", slice(0, 15)), "val": ("crop_superior", slice(15, 30))}


def remap(seg: np.ndarray) -> np.ndarray:
    """TotalSegmentator's label ids -> 0 background, 1.. the classes of :data:`CLASSES` in order."""
    out = np.zeros(seg.shape, dtype=np.uint8)
    for k, ids in enumerate(CLASSES.values(), start=1):
        out[np.isin(seg, ids)] = k
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory to write train/ and val/ into")
    args = parser.parse_args(argv)
    image = nib.load(data_path("ct", "volumes", "totalseg_example_ct_crop.nii.gz"))
    seg = nib.load(data_path("ct", "volumes", "totalseg_example_ct_crop_seg.nii.gz"))
    if image.shape != seg.shape or image.shape[2] != 30:
        raise SystemExit(f"unexpected crop: image {image.shape}, labels {seg.shape} (expected 122 x 101 x 30)")
    ct = np.asarray(image.dataobj)
    labels = remap(np.asarray(seg.dataobj).astype(np.int64))
    for part, (stem, z) in SPLIT.items():
        affine = image.affine.copy()
        affine[:3, 3] = image.affine[:3, :3] @ np.array([0.0, 0.0, z.start]) + image.affine[:3, 3]
        for sub, array in (("images", ct[:, :, z]), ("labels", labels[:, :, z])):
            folder = args.out / part / sub
            folder.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(np.ascontiguousarray(array), affine), folder / f"{stem}.nii.gz")
        counts = np.bincount(labels[:, :, z].ravel(), minlength=len(CLASSES) + 1)
        print(f"{part}: {stem}, {ct[:, :, z].shape} voxels; "
              + ", ".join(f"{n} {c}" for n, c in zip(("background", *CLASSES), counts, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
