"""Inference on whole scans: ``zoo predict`` and its Python API.

2D: images (files or folders) -> class probabilities (CSV or JSON) for a classifier, or masks (PNG, on the
image's own pixel grid) for a segmentation model, tiled at the checkpoint's input size.

3D classifiers (one prediction per volume, e.g. fine-tuned by ``zoo finetune`` on NIfTI + CSV): each whole
volume is preprocessed exactly as ``zoo finetune`` trained on it (the same functions: reoriented to RAS,
resampled to the checkpoint's spacing, HU-windowed, resized whole to the checkpoint's cube) -> one row per
volume (CSV or JSON), as for 2D classifiers. Both kinds of classifier apply the checkpoint's decision rule
(``pretrained_cfg.decision``: sigmoid + per-label thresholds for multi-label, the binary threshold).

3D dense models: a NIfTI volume -> read with its affine, reoriented to RAS, resampled to the checkpoint's voxel spacing
and HU-windowed (:class:`zoo.data.transforms.VolumeTransform`), then a sliding window over the whole
volume (overlap, Gaussian importance blending, windows batched; the output is accumulated on the resampled
grid, windows are never all held at once), then everything undone: resampled back onto the input's grid,
reoriented to the file's axes, written as NIfTI with the input's affine (labels, probabilities, or, for a
restoration model, the image mapped back from the HU window to Hounsfield units).

The tiling follows ``monai.inferers.sliding_window_inference`` (the same window positions, symmetric zero
padding of small inputs and Gaussian map, ``sigma_scale=0.125``) and the resampling ``monai.transforms.Spacing``
(:func:`zoo.data.ct.resampled_shape`); tests check both against MONAI.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._io import atomic_write, atomic_write_json, atomic_write_text

__all__ = [
    "PredictError",
    "gaussian_importance",
    "window_starts",
    "sliding_window",
    "load_predictor",
    "predict",
    "predict_images",
    "predict_volume",
    "classify_volumes",
]

_logger = logging.getLogger(__name__)
OUTPUTS = ("labels", "probabilities", "image")


class PredictError(ValueError):
    """Bad input to ``zoo predict`` (the message names the file and the fix)."""


# --- sliding window --------------------------------------------------------------------------------
def gaussian_importance(roi_size: Sequence[int], sigma_scale: float = 0.125) -> torch.Tensor:
    """The Gaussian weight of a window (MONAI's ``compute_importance_map``: sigma = ``sigma_scale`` x size)."""
    w: torch.Tensor | None = None
    for i, n in enumerate(roi_size):
        x = torch.arange(-(n - 1) / 2.0, (n - 1) / 2.0 + 1, dtype=torch.float)
        x = torch.exp(x**2 / (-2 * (n * sigma_scale) ** 2))
        w = x if w is None else w.unsqueeze(-1) * x[(None,) * i]
    assert w is not None
    return w.clamp_(min=max(float(w.min()), 1e-3))


def window_starts(image_size: Sequence[int], roi_size: Sequence[int], overlap: float) -> list[list[int]]:
    """Start of every window along each axis (MONAI's ``dense_patch_slices``; the last window is flush
    with the end). ``image_size`` must be at least ``roi_size``."""
    starts = []
    for n, r in zip(image_size, roi_size, strict=True):
        step = r if r == n else max(int(r * (1 - overlap)), 1)
        count = next((d for d in range(math.ceil(n / step)) if d * step + r >= n), 0) + 1
        starts.append([i * step - max(i * step + r - n, 0) for i in range(count)])
    return starts


def sliding_window(
    x: torch.Tensor,
    predictor: Callable[[torch.Tensor], torch.Tensor],
    roi_size: Sequence[int],
    overlap: float = 0.25,
    mode: str = "gaussian",
    batch_size: int = 4,
    sigma_scale: float = 0.125,
) -> torch.Tensor:
    """Dense prediction of ``(1, C, *spatial)`` by tiling ``roi_size`` windows; returns ``(1, K, *spatial)``.

    Inputs smaller than a window are zero-padded symmetrically (and the padding removed after); windows
    overlap by ``overlap`` and are blended with a Gaussian (``mode="gaussian"``) or uniform (``"constant"``)
    weight; ``batch_size`` windows go through ``predictor`` at once. Memory: the input, the output and one
    weight map, plus one batch of windows.
    """
    if x.ndim != len(roi_size) + 2 or x.shape[0] != 1:
        raise ValueError(f"sliding_window takes one image (1, C, *spatial) with {len(roi_size)} spatial dims, got "
                         f"{tuple(x.shape)}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if mode not in ("gaussian", "constant"):
        raise ValueError(f"mode must be 'gaussian' or 'constant', got {mode!r}")
    roi = tuple(int(r) for r in roi_size)
    size0 = tuple(x.shape[2:])
    pad: list[int] = []
    for n, r in zip(reversed(size0), reversed(roi), strict=True):  # F.pad: last dim first
        diff = max(r - n, 0)
        pad += [diff // 2, diff - diff // 2]
    if any(pad):
        x = F.pad(x, pad)
    size = tuple(x.shape[2:])
    weight = gaussian_importance(roi, sigma_scale) if mode == "gaussian" else torch.ones(roi)
    starts = window_starts(size, roi, overlap)
    corners = [tuple(c) for c in np.stack(np.meshgrid(*starts, indexing="ij"), -1).reshape(-1, len(roi)).tolist()]
    out: torch.Tensor | None = None
    count = torch.zeros(size)
    _logger.info("sliding window: %d windows of %s over %s (overlap %g, %s)", len(corners), roi, size, overlap, mode)
    for b in range(0, len(corners), batch_size):
        chunk = corners[b:b + batch_size]
        boxes = [tuple(slice(s, s + r) for s, r in zip(c, roi, strict=True)) for c in chunk]
        pred = predictor(torch.cat([x[(slice(None), slice(None), *box)] for box in boxes]))
        if tuple(pred.shape[2:]) != roi:
            raise PredictError(f"the model maps a {roi} window to {tuple(pred.shape)}: sliding-window inference needs "
                               "a dense model (segmentation or restoration) that keeps the window size")
        if out is None:
            out = torch.zeros((1, pred.shape[1], *size), dtype=torch.float32)
        for p, box in zip(pred, boxes, strict=True):
            out[(0, slice(None), *box)] += p.float() * weight
            count[box] += weight
    assert out is not None
    out /= count
    if any(pad):
        crop = [slice(pad[2 * (len(roi) - 1 - i)], pad[2 * (len(roi) - 1 - i)] + n) for i, n in enumerate(size0)]
        out = out[(slice(None), slice(None), *crop)]
    return out


# --- the model -------------------------------------------------------------------------------------
def _cfg_field(cfg: Any, *names: str) -> Any:
    """A field of a pretrained config that a fine-tuned model may carry (attribute or ``metrics`` entry)."""
    for name in names:
        value = getattr(cfg, name, None)
        if value is None and isinstance(getattr(cfg, "metrics", None), dict):
            value = cfg.metrics.get(name)
        if value not in (None, "", (), []):
            return value
    return None


def load_predictor(model: nn.Module | str) -> nn.Module:
    """A zoo model in eval mode: a model, or a name (``arch.tag``, ``local-dir:RUN``, ``hf-hub:org/name``)
    loaded with its weights."""
    if isinstance(model, nn.Module):
        if getattr(model, "pretrained_cfg", None) is None:
            raise PredictError("predict needs a zoo model (made by zoo.create_model): it carries the preprocessing")
        return model.eval()
    from ..hub import is_hub_name
    from ..meta.registry import get_pretrained_cfg
    from ..models.builder import create_model

    if not is_hub_name(model) and not get_pretrained_cfg(model).has_weights:
        raise PredictError(f"{model} has no weights: predictions of a random network mean nothing. Pass a fine-tuned "
                           "model (local-dir:RUN from `zoo finetune`) or a name from `zoo list --pretrained`")
    return create_model(model, pretrained=True).eval()


def _is_dense(model: nn.Module, cfg: Any) -> bool:
    """Does the model predict per pixel/voxel (segmentation, restoration) rather than per image?"""
    with torch.no_grad():
        out = model(torch.zeros(1, *cfg.input_size))
    return out.ndim == len(cfg.input_size) + 1


def _activate(logits: torch.Tensor, model: nn.Module, multi_label: bool) -> torch.Tensor:
    """Probabilities along dim 1: sigmoid for one output or multi-label heads, softmax otherwise (a model whose
    forward already ends in a sigmoid is left as it is)."""
    if getattr(model, "out_act", None) == "sigmoid":
        return logits
    if logits.shape[1] == 1 or multi_label:
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)


def _class_names(cfg: Any, k: int) -> list[str]:
    names = _cfg_field(cfg, "label_names", "class_names", "classes")
    if names is not None and len(names) == k:
        return [str(n) for n in names]
    return [f"class_{i}" for i in range(k)]


def _threshold(cfg: Any, threshold: float | None) -> float:
    if threshold is not None:
        return float(threshold)
    value = (getattr(cfg, "decision", None) or {}).get("threshold")
    if not isinstance(value, (int, float)):
        value = _cfg_field(cfg, "threshold", "decision_threshold")
    return float(value) if isinstance(value, (int, float)) else 0.5


def _multi_label(cfg: Any) -> bool:
    """Independent sigmoid outputs: a ``zoo finetune`` multi-label head (decision ``sigmoid`` with one
    threshold per label), or a config that says ``multi_label``."""
    decision = getattr(cfg, "decision", None) or {}
    return bool(_cfg_field(cfg, "multi_label")) or (decision.get("activation") == "sigmoid" and "thresholds" in decision)


def _cuts(cfg: Any, k: int, threshold: float | None) -> list[float]:
    """One decision threshold per output: ``threshold`` if given, else the checkpoint's (per label for
    multi-label heads), else 0.5."""
    per_label = (getattr(cfg, "decision", None) or {}).get("thresholds")
    if threshold is None and isinstance(per_label, (list, tuple)) and len(per_label) == k:
        return [float(t) for t in per_label]
    return [_threshold(cfg, threshold)] * k


def _class_rows(files: Sequence[Path], prob: torch.Tensor, cfg: Any, multi_label: bool,
                threshold: float | None) -> list[dict[str, Any]]:
    """One row per input: path, a probability per class, the prediction under the checkpoint's decision rule."""
    if prob.shape[1] == 1:  # one logit: the probability of the positive class
        prob = torch.cat([1 - prob, prob], dim=1)
    names = _class_names(cfg, prob.shape[1])
    cuts = _cuts(cfg, len(names), threshold)
    rows = []
    for f, p in zip(files, prob.tolist(), strict=True):
        row: dict[str, Any] = {"path": str(f), **{n: round(v, 6) for n, v in zip(names, p, strict=True)}}
        if multi_label:
            row["prediction"] = ";".join(n for n, v, t in zip(names, p, cuts, strict=True) if v >= t)
        elif len(names) == 2:
            row["prediction"] = names[int(p[1] >= cuts[1])]
        else:
            row["prediction"] = names[int(np.argmax(p))]
        rows.append(row)
    return rows


def _write_rows(out: Path, rows: list[dict[str, Any]]) -> None:
    """JSON when ``out`` ends in ``.json``, CSV otherwise (written atomically)."""
    if out.suffix.lower() == ".json":
        atomic_write_json(out, rows)
        return

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, write)


# --- 2D --------------------------------------------------------------------------------------------
def _image_files(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    from ..data.datasets import IMAGE_EXTENSIONS

    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.name.endswith((".nii", ".nii.gz")):
            raise PredictError(f"{p} is a NIfTI volume but the model is a 2D model; pass images (PNG, JPEG, ...), "
                               "or a 3D model for volumes")
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise PredictError(f"{p} holds no image ({', '.join(IMAGE_EXTENSIONS)}); pass image files or folders")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise PredictError(f"{p} does not exist; pass image files or folders of them")
    if not files:
        raise PredictError("no input images given")
    return files


def _open_image(path: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError) as err:
        raise PredictError(f"{path} is not a readable image ({err}); remove it or convert it to PNG") from err


def _batches(items: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array)


def predict_images(
    model: nn.Module | str,
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    batch_size: int = 16,
    overlap: float = 0.25,
    threshold: float | None = None,
    probabilities: bool = False,
) -> list[dict[str, Any]]:
    """2D inference over image files and folders.

    A classifier writes one row per image (path, one probability per class, the prediction) to ``out``:
    JSON when it ends in ``.json``, CSV otherwise. A segmentation model writes ``out/<name>_mask.png`` per
    image, on the image's own pixel grid (tiled at the checkpoint's input size; a model fine-tuned on resized
    images, ``pretrained_cfg.image_scale`` from ``zoo finetune --scale``, sees each image resized the same way
    and its output is resized back): 0/255 for one class, the class index otherwise; ``probabilities`` adds
    ``<name>_prob.png`` (8 bit, one class) or ``.npy``.
    Returns the rows (classifier) or one ``{"path", "mask"}`` per image.
    """
    from ..data.transforms import create_transform, resolve_data_config

    model = load_predictor(model)
    cfg = model.pretrained_cfg
    if cfg.spatial_dims != 2:
        raise PredictError(f"{cfg.name} is a 3D model; pass a NIfTI volume (predict_volume)")
    files = _image_files(inputs)
    multi_label = _multi_label(cfg)
    out = Path(out)
    if not _is_dense(model, cfg):
        transform = create_transform(model)
        rows: list[dict[str, Any]] = []
        with torch.no_grad():
            for chunk in _batches(files, batch_size):
                x = torch.stack([transform(_open_image(f)) for f in chunk])
                rows += _class_rows(chunk, _activate(model(x), model, multi_label), cfg, multi_label, threshold)
        _write_rows(out, rows)
        _logger.info("%d images -> %s", len(rows), out)
        return rows
    from PIL import Image

    from ..data.userdata import scaled_size

    out.mkdir(parents=True, exist_ok=True)
    roi = tuple(cfg.input_size[1:])
    scale = cfg.image_scale
    results = []
    stems: dict[str, int] = {}
    with torch.no_grad():
        for f in files:
            img = _open_image(f)
            w, h = img.size
            if scale != 1.0:  # the model was trained on images resized by this factor (zoo finetune --scale)
                img = img.resize(scaled_size((w, h), scale), Image.BILINEAR)
            sw, sh = img.size
            x = create_transform(resolve_data_config(model, input_size=(cfg.in_chans, sh, sw), crop_pct=1.0))(img)
            prob = _activate(sliding_window(x[None], model, roi, overlap=overlap, batch_size=batch_size), model,
                             multi_label)[0]
            if (sh, sw) != (h, w):  # back onto the image's own pixel grid
                prob = F.interpolate(prob[None], size=(h, w), mode="bilinear", align_corners=False)[0]
            if prob.shape[0] == 1:
                mask = ((prob[0] >= _threshold(cfg, threshold)).numpy() * 255).astype(np.uint8)
            else:
                mask = prob.argmax(0).numpy().astype(np.uint8)
            stem = f.stem if f.stem not in stems else f"{f.stem}_{stems[f.stem]}"
            stems[f.stem] = stems.get(f.stem, 0) + 1
            dst = out / f"{stem}_mask.png"
            atomic_write(dst, lambda tmp, m=mask: Image.fromarray(m).save(tmp, format="PNG"))
            if probabilities:
                if prob.shape[0] == 1:
                    p8 = (prob[0].clamp(0, 1) * 255).round().numpy().astype(np.uint8)
                    atomic_write(out / f"{stem}_prob.png", lambda tmp, m=p8: Image.fromarray(m).save(tmp, format="PNG"))
                else:
                    atomic_write(out / f"{stem}_prob.npy", lambda tmp, p=prob: _save_npy(tmp, p.numpy()))
            results.append({"path": str(f), "mask": str(dst)})
    _logger.info("%d masks -> %s", len(results), out)
    return results


# --- 3D --------------------------------------------------------------------------------------------
def predict_volume(
    model: nn.Module | str,
    volume: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    output: str = "labels",
    roi_size: Sequence[int] | None = None,
    overlap: float = 0.25,
    batch_size: int = 4,
    threshold: float | None = None,
    mode: str = "gaussian",
) -> dict[str, Any]:
    """Whole-volume 3D inference: a NIfTI in, a NIfTI out on the input's grid and affine.

    Args:
        model: a zoo 3D dense model (segmentation or restoration) or its name (``local-dir:RUN``, ...).
        volume: a NIfTI file in Hounsfield units.
        out: the NIfTI file to write (``.nii.gz``).
        output: ``labels`` (argmax, or the threshold for one output channel; uint8), ``probabilities``
            (float32, one channel per class in the 4th dimension, or 3D for one channel) or ``image`` (a
            restoration model's output mapped back from the HU window to HU, float32; the restoration
            checkpoints end in a sigmoid, applied here when the model returns logits).
        roi_size: window size in voxels (default: the checkpoint's input size).
        overlap: fraction of a window shared with its neighbour along each axis.
        batch_size: windows per forward pass (memory grows with it).
        threshold: decision threshold of a one-channel output (default: the checkpoint's, else 0.5).
        mode: ``gaussian`` or ``constant`` blending.

    Returns:
        a summary: shapes, spacings, number of windows, wall time.
    """
    import nibabel as nib

    from ..data.ct import from_ras, read_nifti, resample, to_ras
    from ..data.transforms import create_transform

    if output not in OUTPUTS:
        raise PredictError(f"output must be one of {OUTPUTS}, got {output!r}")
    start = time.perf_counter()
    model = load_predictor(model)
    cfg = model.pretrained_cfg
    if cfg.spatial_dims != 3:
        raise PredictError(f"{cfg.name} is a 2D model; pass images (predict_images)")
    if not _is_dense(model, cfg):
        raise PredictError(f"{cfg.name} outputs one prediction per volume, not per voxel: classify volumes with "
                           "classify_volumes (or predict / `zoo predict MODEL VOLUMES -o predictions.csv`); "
                           "predict_volume writes a NIfTI per volume for segmentation and restoration models")
    if output == "image" and cfg.intensity.kind != "hu_window":
        raise PredictError(f"output='image' maps the model's [0, 1] output back through its HU window, but {cfg.name} "
                           f"has no HU window ({cfg.intensity.describe()})")
    data, img = read_nifti(volume)
    ras, native_spacing = to_ras(data, img.affine)
    ras_shape = ras.shape
    transform = create_transform(model)
    x = transform.prepare(ras, affine=np.diag([*native_spacing, 1.0]))  # RAS already (reoriented once, here)
    grid_shape = list(x.shape[1:])
    grid_spacing = tuple(cfg.voxel_spacing) if cfg.voxel_spacing is not None else native_spacing
    roi = tuple(int(r) for r in (roi_size or cfg.input_size[1:]))
    if len(roi) != 3 or min(roi) <= 0:
        raise PredictError(f"roi_size must be 3 positive sizes, got {roi}")
    with torch.no_grad():
        logits = sliding_window(x[None], model, roi, overlap=overlap, batch_size=batch_size, mode=mode)[0]
    del x
    n_windows = math.prod(len(s) for s in window_starts([max(n, r) for n, r in zip(logits.shape[1:], roi,
                                                                                    strict=True)], roi, overlap))

    def back(t: torch.Tensor, how: str = "trilinear") -> torch.Tensor:  # resampled grid -> input's RAS grid
        return resample(t, grid_spacing, native_spacing, mode=how, shape=ras_shape)

    multi_label = _multi_label(cfg)
    if output == "image":
        it = cfg.intensity
        unit = logits[0] if getattr(model, "out_act", None) == "sigmoid" else torch.sigmoid(logits[0])
        result = back(unit * (it.hu_max - it.hu_min) + it.hu_min).numpy().astype(np.float32)
    else:
        prob = _activate(logits[None], model, multi_label)[0]
        del logits
        if output == "probabilities":
            result = back(prob).numpy().astype(np.float32)
            result = np.moveaxis(result, 0, -1) if result.shape[0] > 1 else result[0]
        elif prob.shape[0] == 1 or multi_label:
            cut = _threshold(cfg, threshold)
            if prob.shape[0] == 1:
                result = (back(prob[0]) >= cut).numpy().astype(np.uint8)
            else:  # multi-label: one binary map per class in the 4th dimension
                result = np.moveaxis((back(prob) >= cut).numpy().astype(np.uint8), 0, -1)
        else:  # argmax on the input's grid, one class at a time (two volumes in memory, not K)
            best = back(prob[0])
            label = torch.zeros(ras_shape, dtype=torch.uint8)
            for k in range(1, prob.shape[0]):
                pk = back(prob[k])
                better = pk > best
                label[better] = k
                best = torch.where(better, pk, best)
            result = label.numpy()
    spatial = result if result.ndim == 3 else None
    if spatial is not None:
        result = from_ras(result, img.affine)
    else:
        result = np.stack([from_ras(result[..., c], img.affine) for c in range(result.shape[-1])], -1)
    header = img.header.copy()
    header.set_data_dtype(result.dtype)
    header["scl_slope"], header["scl_inter"] = 1.0, 0.0
    nii = nib.Nifti1Image(np.ascontiguousarray(result), img.affine, header=header)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    blob = nii.to_bytes()
    atomic_write(out, lambda tmp: tmp.write_bytes(gzip.compress(blob, 6) if out.name.endswith(".gz") else blob))
    summary = {
        "model": cfg.name, "input": str(volume), "output": str(out), "kind": output,
        "input_shape": list(data.shape), "input_spacing_ras": [round(s, 4) for s in native_spacing],
        "model_spacing": list(grid_spacing), "resampled_shape": grid_shape, "roi_size": list(roi), "overlap": overlap, "windows": n_windows,
        "wall_time_s": round(time.perf_counter() - start, 2),
    }
    _logger.info("%s", summary)
    return summary


def classify_volumes(
    model: nn.Module | str,
    volumes: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    batch_size: int = 4,
    threshold: float | None = None,
) -> list[dict[str, Any]]:
    """3D classification: one row per NIfTI volume (path, a probability per class, the prediction).

    Each whole volume gets exactly the preprocessing ``zoo finetune`` trained the classifier on, through the
    same functions (:func:`zoo.data.userdata.load_volumes` with the checkpoint's voxel spacing and
    :func:`zoo.eval.finetune.hu_window`, then :func:`zoo.eval.finetune.classifier_preprocess`): reoriented to
    RAS, resampled, HU-windowed and resized whole (nothing cropped) to the checkpoint's cube. The decision
    rule is the checkpoint's (binary threshold, or sigmoid + per-label thresholds for multi-label;
    ``threshold`` overrides it). Rows go to ``out``: JSON when it ends in ``.json``, CSV otherwise; a folder
    gets ``predictions.csv``."""
    from ..data.userdata import load_volumes
    from .finetune import classifier_preprocess, hu_window

    model = load_predictor(model)
    cfg = model.pretrained_cfg
    if cfg.spatial_dims != 3:
        raise PredictError(f"{cfg.name} is a 2D model; pass images (predict_images)")
    if _is_dense(model, cfg):
        raise PredictError(f"{cfg.name} predicts per voxel: use predict_volume (a NIfTI out per volume)")
    files = [Path(v) for v in volumes]
    if not files:
        raise PredictError("no input volumes given")
    for f in files:
        if not f.name.endswith((".nii", ".nii.gz")):
            raise PredictError(f"{f} is not a NIfTI volume (.nii, .nii.gz) and {cfg.name} is a 3D model; pass NIfTI "
                               "volumes, or a 2D model for images")
    out = Path(out)
    if out.name.endswith((".nii", ".nii.gz")):
        raise PredictError(f"{cfg.name} classifies whole volumes: it writes a table, not a NIfTI; pass -o FILE.csv "
                           "(or .json)")
    if out.is_dir():
        out = out / "predictions.csv"
    size = tuple(int(n) for n in cfg.input_size[1:])
    prep = classifier_preprocess(cfg, size)
    multi_label = _multi_label(cfg)
    rows: list[dict[str, Any]] = []
    with torch.no_grad():
        for chunk in _batches(files, batch_size):
            x = prep(load_volumes(chunk, size, cfg.voxel_spacing, hu_window(cfg)))
            rows += _class_rows(chunk, _activate(model(x).float(), model, multi_label), cfg, multi_label, threshold)
    _write_rows(out, rows)
    _logger.info("%d volumes -> %s", len(rows), out)
    return rows


def predict(
    model: nn.Module | str,
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    **kwargs: Any,
) -> Any:
    """:func:`predict_images` for a 2D model, :func:`classify_volumes` for a 3D classifier (one table row per
    volume), :func:`predict_volume` for a 3D dense model (each volume in turn; with several volumes ``out`` is a
    folder and each result is ``out/<name>_pred.nii.gz``)."""
    model = load_predictor(model)
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    cfg = model.pretrained_cfg
    if cfg.spatial_dims == 2:
        return predict_images(model, items, out, **kwargs)
    from ..data.ct import find_volumes

    volumes: list[Path] = []
    for item in items:
        try:
            volumes += find_volumes(item)
        except Exception as err:
            raise PredictError(f"{err} Pass NIfTI volumes (.nii or .nii.gz) or folders of them.") from err
    for v in volumes:
        if not v.name.endswith((".nii", ".nii.gz")):
            raise PredictError(f"{v} is not a NIfTI volume (.nii, .nii.gz) and {cfg.name} is a 3D model; pass NIfTI "
                               "volumes, or a 2D model for images")
    if not _is_dense(model, cfg):
        if kwargs.get("output", "labels") == "image" or kwargs.get("roi_size") is not None:
            raise PredictError(f"{cfg.name} is a classifier: it takes each whole volume resized to its input, so "
                               "--roi-size and --output image do not apply; drop them")
        return classify_volumes(model, volumes, out, batch_size=kwargs.get("batch_size", 4),
                                threshold=kwargs.get("threshold"))
    out = Path(out)
    if len(volumes) == 1 and out.name.endswith((".nii", ".nii.gz")):
        return [predict_volume(model, volumes[0], out, **kwargs)]
    if out.name.endswith((".nii", ".nii.gz")):
        raise PredictError(f"{len(volumes)} volumes but one output file {out}; pass an output folder")
    results = []
    for v in volumes:
        stem = v.name[: -len(".nii.gz")] if v.name.endswith(".nii.gz") else v.stem
        results.append(predict_volume(model, v, out / f"{stem}_pred.nii.gz", **kwargs))
    atomic_write_text(out / "predictions.json", json.dumps(results, indent=2) + "\n")
    return results
