"""Grad-CAM saliency (Selvaraju et al., ICCV 2017) through the model contract, and a comparison figure.

:func:`grad_cam` needs no hooks: ``forward_features`` gives the last feature map, ``forward_head``
the logits, and the map's gradient weights its channels. :func:`gradcam_figure` fits a linear probe
on frozen features for the checkpoint and for random init (the harness's linear protocol, one seed),
folds it into the model's head and shows the maps of a few test images side by side (a volume and its map
by their maximum-intensity projections along the first spatial axis: a single slice would miss the map's peak).
"""

from __future__ import annotations

import logging
import os
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._plot import gradcam_metadata, pyplot, save_figure
from ..data.sampling import stratified_subset
from .harness import EvalConfig, build_classifier, prepare_context
from .probe import LogisticRegression
from .tasks import get_task

__all__ = ["grad_cam", "gradcam_figure", "GRADCAM_DEFAULT_SIZE", "GRADCAM_DEFAULT_SIZE_3D"]

_logger = logging.getLogger(__name__)
GRADCAM_DEFAULT_SIZE = 224  # a 28 px input leaves a ResNet a 1 x 1 map: too coarse for saliency
GRADCAM_DEFAULT_SIZE_3D = 64  # a 28^3 volume leaves the 3D U-Net encoder a 3^3 map, 64^3 an 8^3 one


def grad_cam(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM of ``target`` classes (default: the predicted ones) on the last feature map.

    Returns ``(cams, logits)``: cams ``(N, *spatial)`` upsampled to the input size, each scaled to [0, 1].
    """
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
    feats = feats.detach().requires_grad_(True)
    logits = model.forward_head(feats)
    if logits.ndim != 2:
        raise ValueError("Grad-CAM needs a classifier (N, num_classes) output; create the model with num_classes > 0")
    cls = logits.argmax(1) if target is None else torch.as_tensor(target).reshape(-1)
    if cls.numel() == 1:
        cls = cls.expand(len(x))
    score = logits.gather(1, cls.long()[:, None]).sum()
    (grad,) = torch.autograd.grad(score, feats)
    spatial = tuple(range(2, feats.ndim))
    weights = grad.mean(dim=spatial, keepdim=True)
    cam = F.relu((weights * feats).sum(1, keepdim=True)).detach()
    mode = "bilinear" if cam.ndim == 4 else "trilinear"
    cam = F.interpolate(cam, size=x.shape[2:], mode=mode, align_corners=False)[:, 0]
    flat = cam.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    cam = (cam - lo.view(-1, *[1] * (cam.ndim - 1))) / (hi - lo).clamp_min(1e-8).view(-1, *[1] * (cam.ndim - 1))
    return cam, logits.detach()


def _probe_model(ctx: Any, arm: str, seed: int) -> nn.Module:
    """The arm's backbone with a linear-probe head (standardisation folded in) fitted on the train pool."""
    model = build_classifier(ctx.source, arm, num_classes=0, seed=seed)
    train_f = ctx.features(model, arm, seed, "train")
    probe = LogisticRegression(ctx.task.num_classes).fit(train_f, ctx.train.labels)
    # the same backbone (a model built with a head would draw its random init in another order)
    model.reset_classifier(ctx.task.num_classes)
    head = model.get_submodule(ctx.source.cfg.classifier)
    w, b = probe.folded_linear()
    if not isinstance(head, nn.Linear) or head.weight.shape != w.shape:
        raise ValueError(f"{ctx.source.name}'s head {ctx.source.cfg.classifier} is not a linear layer of {tuple(w.shape)}")
    with torch.no_grad():
        head.weight.copy_(w)
        head.bias.copy_(b)
    return model


def gradcam_figure(
    name: str,
    task: str,
    out: str | os.PathLike[str],
    n_images: int = 4,
    img_size: int | None = None,
    checkpoint_path: str | None = None,
    max_train: int | None = None,
    seed: int = 0,
    cache: bool = True,
) -> Path:
    """A PNG: test images (rows) and Grad-CAM of the checkpoint and of random init (columns)."""
    plt = pyplot()
    spec = get_task(task)
    if spec.kind != "classification":
        raise ValueError(f"Grad-CAM figures are for classification tasks; {task} is a {spec.kind} task")
    default_size = GRADCAM_DEFAULT_SIZE_3D if spec.spatial_dims == 3 else GRADCAM_DEFAULT_SIZE
    config = EvalConfig(model=name, task=task, protocol="linear", seeds=1, img_size=img_size or default_size,
                        max_train=max_train, checkpoint_path=checkpoint_path, cache=cache)
    ctx = prepare_context(config)
    n = min(n_images, len(ctx.test))
    if n >= len(np.unique(ctx.test.labels)):
        pick = stratified_subset(ctx.test.labels, size=n, seed=seed)
    else:
        pick = np.sort(np.random.default_rng(seed).permutation(len(ctx.test))[:n])
    images = ctx.test.images[pick]
    unit = ctx.prep.unit(images)
    volume = unit.ndim == 5  # shown by maximum-intensity projections along the first spatial axis
    shown = (unit.amax(dim=2) if volume else unit).permute(0, 2, 3, 1).numpy()
    x = ctx.prep(images)
    columns: list[tuple[str, np.ndarray, np.ndarray]] = []
    for arm in ctx.source.arms:
        model = _probe_model(ctx, arm, seed)
        cams, logits = grad_cam(model, x)
        cams = cams.amax(dim=1) if volume else cams
        columns.append((arm.replace("_", " "), cams.numpy(), torch.softmax(logits, 1).numpy()))
    names = ctx.task.classes or tuple(str(i) for i in range(ctx.task.num_classes))
    fig, axes = plt.subplots(len(pick), 1 + len(columns), figsize=(2.6 * (1 + len(columns)), 2.6 * len(pick)),
                             squeeze=False)
    for r in range(len(pick)):
        img = shown[r].clip(0, 1)
        img = img[..., 0] if img.shape[-1] == 1 else img
        axes[r, 0].imshow(img, cmap="gray" if img.ndim == 2 else None)
        axes[r, 0].set_title(f"label: {names[int(ctx.test.labels[pick[r]])]}", fontsize=8)
        for c, (label, cams, probs) in enumerate(columns, start=1):
            axes[r, c].imshow(img, cmap="gray" if img.ndim == 2 else None)
            axes[r, c].imshow(cams[r], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            k = int(probs[r].argmax())
            axes[r, c].set_title(f"{label}: {names[k]} ({probs[r, k]:.2f})", fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    size = f"{ctx.img_size}^3 voxels, maximum-intensity projections" if volume else f"{ctx.img_size} px"
    fig.suptitle(f"Grad-CAM, {name} on {task} ({size}, linear probe)", fontsize=9)
    fig.tight_layout()
    # the PNG says how it was drawn and from which weights (`zoo report --gradcam` quotes the command;
    # scripts/evaluate_reference.sh skips figures already drawn from the registered file)
    command = ["zoo", "gradcam", name, "--task", task, "-o", str(out), "--n-images", str(n_images),
               "--img-size", str(ctx.img_size)]
    for flag, value in (("--checkpoint-path", checkpoint_path), ("--max-train", max_train)):
        if value is not None:
            command += [flag, str(value)]
    if seed:
        command += ["--seed", str(seed)]
    path = save_figure(fig, out, dpi=110, metadata=gradcam_metadata(shlex.join(command), ctx.source.sha256))
    _logger.info("Grad-CAM figure written to %s", path)
    return path
