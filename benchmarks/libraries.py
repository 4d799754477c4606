"""Hand-written code vs the maintained library doing the same job, side by side on real data, in one run.

zoo 0.2 shipped a hand-written linear probe and ROC AUC; this benchmark measured them against scikit-learn,
and zoo now uses scikit-learn for both (:mod:`zoo.eval.probe`, :mod:`zoo.eval.metrics`). The hand-written
versions are kept in this file as the measured alternative, so the comparison can be rerun.

1. linear probe: the hand-written :class:`HandwrittenProbe` (torch L-BFGS, zoo 0.2) vs
   :class:`zoo.eval.probe.LogisticRegression` (scikit-learn ``LogisticRegression(solver="lbfgs")``), both doing
   the same job: standardise, choose L2 by 3-fold CV over ``L2_GRID`` on held-out log-loss, refit (the ``C``
   mapping is in :mod:`zoo.eval.probe`'s docstring). Features: pooled ``resnet18.micle_kermany64`` features of
   the Kermany train images at 64 px (the harness's stratified label-fraction subsets, seed 0) and of the 624
   test images.
2. metrics: the hand-written rank AUC + F1 vs :mod:`zoo.eval.metrics` (``sklearn.metrics``) on the probe's
   test predictions and on a DRIVE vessel map (inverted green channel of the 20 test photographs, scored inside
   the FOV masks).
3. image folders: :class:`zoo.data.datasets.ImageFolderDataset` vs ``torchvision.datasets.ImageFolder`` +
   ``transforms.v2`` (square centre crop, bilinear antialiased resize), the 624 Kermany test images at 64 px.
4. Grad-CAM: :func:`zoo.eval.gradcam.grad_cam` vs the ``grad-cam`` package (``pytorch_grad_cam.GradCAM``)
   on the same model (the backbone with the last fraction's probe folded into its head), target layer
   (``layer4``, the map ``forward_features`` returns), classes (the predicted ones) and test images.

In the table, "zoo" is what zoo ships today (scikit-learn for rows 1-2, zoo's own code for rows 3-4) and
"other" the alternative (the hand-written zoo 0.2 code for rows 1-2, the library for rows 3-4).

Everything runs at one torch / BLAS thread. Prints one table and writes ``results/libraries.json``.

    nice python benchmarks/libraries.py [--fractions 0.01 0.1 1] [--gradcam-images 16] [--gradcam-size 224]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo._io import atomic_write_text  # noqa: E402
from zoo._machine import cpu_info  # noqa: E402
from zoo.data.datasets import ImageFolderDataset  # noqa: E402
from zoo.data.sampling import stratified_subset  # noqa: E402
from zoo.eval.gradcam import grad_cam  # noqa: E402
from zoo.eval.harness import Preprocess, extract_features  # noqa: E402
from zoo.eval.metrics import classification_metrics, f1_in_mask, segmentation_metrics  # noqa: E402
from zoo.eval.probe import L2_GRID, LogisticRegression, stratified_folds, torch_threads  # noqa: E402
from zoo.eval.tasks import data_path, get_task  # noqa: E402
from zoo.meta.registry import get_pretrained_cfg  # noqa: E402
from zoo.models.builder import create_model  # noqa: E402

__all__ = ["main"]

_logger = logging.getLogger("benchmarks.libraries")
MODEL = "resnet18.micle_kermany64"
OUT = Path(__file__).resolve().parents[1] / "results" / "libraries.json"


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``(result, wall s, CPU s)`` of one call."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


# --- the hand-written code zoo 0.2 shipped, kept here as the measured alternative --------------------------

def _fit(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.zeros(x.shape[1], num_classes, dtype=x.dtype, requires_grad=True)
    b = torch.zeros(num_classes, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()



class HandwrittenProbe:
    """``fit(features, labels)`` then ``predict_proba(features)``.

    Args:
        num_classes: number of classes (labels are ``0 .. num_classes - 1``).
        l2_grid: candidate L2 strengths (on standardised features); one value skips the search.
        folds: cross-validation folds for the search (fewer when a class has fewer samples).
        max_iter: L-BFGS iterations per fit.
        threads: at most this many torch threads while fitting and predicting (1; ``None``: the process's).
    """

    def __init__(self, num_classes: int, l2_grid: Sequence[float] = L2_GRID, folds: int = 3,
                 max_iter: int = 200, threads: int | None = 1) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes = num_classes
        self.l2_grid = tuple(l2_grid)
        self.folds = folds
        self.max_iter = max_iter
        self.threads = threads
        self.l2: float | None = None
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        self.weight: torch.Tensor | None = None  # (D, K), on standardised features
        self.bias: torch.Tensor | None = None

    def _select(self, x: torch.Tensor, y: np.ndarray) -> float:
        if len(self.l2_grid) == 1:
            return self.l2_grid[0]
        k = min(self.folds, int(np.bincount(y).max()))
        if k < 2:
            return self.l2_grid[len(self.l2_grid) // 2]
        yt = torch.from_numpy(y)
        losses = []
        for l2 in self.l2_grid:
            total = 0.0
            for held in stratified_folds(y, k):
                train = np.setdiff1d(np.arange(len(y)), held)
                w, b = _fit(x[train], yt[train], self.num_classes, l2, self.max_iter)
                total += float(F.cross_entropy(x[held] @ w + b, yt[held], reduction="sum"))
            losses.append(total / len(y))
        best = self.l2_grid[int(np.argmin(losses))]
        _logger.info("linear probe: held-out log-loss %s -> l2=%g",
                     ", ".join(f"{g:g}:{v:.4f}" for g, v in zip(self.l2_grid, losses, strict=True)), best)
        return best

    def fit(self, features: np.ndarray, labels: np.ndarray) -> HandwrittenProbe:
        """Standardise, choose L2 by cross-validation, refit on everything."""
        y = np.asarray(labels).reshape(-1).astype(np.int64)
        if features.ndim != 2 or len(features) != len(y):
            raise ValueError(f"features must be (N, D) with N={len(y)}, got {features.shape}")
        if y.min() < 0 or y.max() >= self.num_classes:
            raise ValueError(f"labels must lie in [0, {self.num_classes - 1}]")
        with torch_threads(self.threads):
            x = torch.as_tensor(features, dtype=torch.float64)
            self.mean = x.mean(0)
            self.std = x.std(0, unbiased=False).clamp_min(1e-6)
            x = (x - self.mean) / self.std
            self.l2 = self._select(x, y)
            self.weight, self.bias = _fit(x, torch.from_numpy(y), self.num_classes, self.l2, self.max_iter)
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, num_classes)``."""
        if self.weight is None or self.mean is None or self.std is None or self.bias is None:
            raise RuntimeError("call fit() before predict_proba()")
        with torch_threads(self.threads):
            x = (torch.as_tensor(features, dtype=torch.float64) - self.mean) / self.std
            return torch.softmax(x @ self.weight + self.bias, dim=1).numpy()

    def folded_linear(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight (K, D), bias (K,))`` acting on raw features (the standardisation folded in)."""
        if self.weight is None or self.mean is None or self.std is None or self.bias is None:
            raise RuntimeError("call fit() first")
        w = (self.weight / self.std[:, None]).T
        b = self.bias - (self.weight * (self.mean / self.std)[:, None]).sum(0)
        return w.float(), b.float()


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their mean rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # boundaries of runs of equal values
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    mean_rank = (starts + ends + 1) / 2.0  # mean of the 1-based ranks start+1 .. end
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def handwritten_roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of a binary problem (Mann-Whitney U; ties count one half).

    Raises ValueError when ``y_true`` holds a single class (the AUC is undefined).
    """
    y = np.asarray(y_true).reshape(-1).astype(bool)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} entries but score has {s.size}")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC is undefined when only one class is present in y_true")
    ranks = _average_ranks(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def bench_probe(fractions: list[float], rows: list[dict[str, Any]]) -> tuple[torch.nn.Module, Any, np.ndarray, np.ndarray, LogisticRegression]:
    """Rows for each label fraction; returns (model, test split, test features, test labels, last zoo probe)."""
    from sklearn.metrics import roc_auc_score

    task = get_task("kermany_pneumonia")
    (train, test), load_s, _ = _timed(lambda: (task.load("train", None, 64), task.load("test", None, 64)))
    _logger.info("Kermany loaded (%d train, %d test) in %.1f s", len(train), len(test), load_s)
    cfg = get_pretrained_cfg(MODEL)
    prep = Preprocess(task.data_config(cfg, 64))
    model = create_model(MODEL, pretrained=True, num_classes=0).to(memory_format=torch.channels_last).eval()
    subsets = {f: stratified_subset(train.labels, fraction=f, seed=0) for f in fractions}
    needed = np.unique(np.concatenate(list(subsets.values())))
    (feats, test_f), feat_s, _ = _timed(lambda: (extract_features(model, train.images[torch.from_numpy(needed)], prep),
                                                 extract_features(model, test.images, prep)))
    _logger.info("features of %d + %d images in %.1f s", len(needed), len(test), feat_s)
    pos = {int(i): j for j, i in enumerate(needed)}
    zoo_probe = None
    for f, sub in subsets.items():
        x, y = feats[[pos[int(i)] for i in sub]], train.labels[sub]
        with _threads_one():
            zoo_probe, zw, zc = _timed(lambda x=x, y=y: LogisticRegression(2, threads=1).fit(x, y))
            hand, hw, hc = _timed(lambda x=x, y=y: HandwrittenProbe(2, threads=1).fit(x, y))
        pz, ph = zoo_probe.predict_proba(test_f), hand.predict_proba(test_f)
        auc_z, auc_h = roc_auc_score(test.labels, pz[:, 1]), roc_auc_score(test.labels, ph[:, 1])
        rows.append({
            "job": f"linear probe, {f:g} labels (n={len(sub)})",
            "zoo": f"AUC {auc_z:.4f} (l2={zoo_probe.l2:g})", "other": f"AUC {auc_h:.4f} (l2={hand.l2:g})",
            "agreement": f"max abs dp {np.abs(pz - ph).max():.1e}"
                         + (f", {zoo_probe.unconverged} sk fits hit max_iter" if zoo_probe.unconverged else ""),
            "time_zoo_s": zw, "time_other_s": hw, "cpu_zoo_s": zc, "cpu_other_s": hc,
            "detail": {"n_train": len(sub), "n_test": len(test), "auc_sklearn": auc_z, "auc_handwritten": auc_h,
                       "l2_sklearn": zoo_probe.l2, "l2_handwritten": hand.l2,
                       "max_abs_prob_diff": float(np.abs(pz - ph).max()), "seed": 0,
                       "sklearn_max_iter": zoo_probe.max_iter, "sklearn_fits_at_max_iter": zoo_probe.unconverged,
                       "fits_per_probe": 3 * len(L2_GRID) + 1},
        })
    assert zoo_probe is not None
    return model, test, test_f, test.labels, zoo_probe


class _threads_one:  # noqa: N801 - a context manager
    """torch and BLAS (threadpoolctl) at one thread inside the block."""

    def __enter__(self) -> None:
        from threadpoolctl import threadpool_limits

        self.before = torch.get_num_threads()
        torch.set_num_threads(1)
        self.limits = threadpool_limits(1)

    def __exit__(self, *exc: object) -> None:
        self.limits.restore_original_limits()
        torch.set_num_threads(self.before)


def bench_metrics(labels: np.ndarray, prob: np.ndarray, rows: list[dict[str, Any]], repeats: int = 20) -> None:
    """Classification metrics on the probe's test predictions; segmentation on a DRIVE vessel map."""

    def zoo_cls() -> dict[str, float]:
        return [classification_metrics(labels, prob) for _ in range(repeats)][-1]

    def hand_cls() -> dict[str, float]:
        return [{"auc": handwritten_roc_auc(labels == 1, prob[:, 1]), "acc": float(np.mean(prob.argmax(1) == labels))}
                for _ in range(repeats)][-1]

    z, zw, zc = _timed(zoo_cls)
    h, hw, hc = _timed(hand_cls)
    diff = max(abs(z[k] - h[k]) for k in z)
    rows.append({"job": f"classification metrics (AUC, ACC; 624 preds, x{repeats})",
                 "zoo": f"AUC {z['auc']:.6f} ACC {z['acc']:.4f}", "other": f"AUC {h['auc']:.6f} ACC {h['acc']:.4f}",
                 "agreement": f"max abs d {diff:.1e}", "time_zoo_s": zw, "time_other_s": hw,
                 "cpu_zoo_s": zc, "cpu_other_s": hc, "detail": {"sklearn": z, "handwritten": h, "max_abs_diff": diff}})

    drive = get_task("drive_vessels").load("test")
    green = np.asarray(drive.images)[..., 1].astype(np.float64)
    score = 1.0 - green / 255.0  # vessels are dark in the green channel: a real, crude vessel map
    target, fov = np.asarray(drive.labels, dtype=bool), np.asarray(drive.fov, dtype=bool)
    thr = float(np.quantile(score[fov], 0.88))  # about the vessel share inside the FOV

    def hand_seg() -> dict[str, float]:
        t, p = target[fov], score[fov]
        return {"f1": f1_in_mask(t, p >= thr), "auc": handwritten_roc_auc(t, p)}

    z, zw, zc = _timed(lambda: segmentation_metrics(target, score, fov, threshold=thr))
    h, hw, hc = _timed(hand_seg)
    diff = max(abs(z[k] - float(h[k])) for k in z)
    npx = int(fov.sum())
    rows.append({"job": f"segmentation metrics (F1, AUC; DRIVE test, {npx / 1e6:.1f} M px)",
                 "zoo": f"F1 {z['f1']:.6f} AUC {z['auc']:.6f}", "other": f"F1 {h['f1']:.6f} AUC {h['auc']:.6f}",
                 "agreement": f"max abs d {diff:.1e}", "time_zoo_s": zw, "time_other_s": hw,
                 "cpu_zoo_s": zc, "cpu_other_s": hc,
                 "detail": {"sklearn": z, "handwritten": {k: float(v) for k, v in h.items()}, "max_abs_diff": diff,
                            "pixels_in_fov": npx, "threshold": thr}})


def bench_folders(rows: list[dict[str, Any]], size: int = 64) -> None:
    """The 624 Kermany test images decoded, centre-cropped and resized by zoo and by torchvision (one worker)."""
    from PIL import Image
    from torchvision import datasets
    from torchvision.transforms import v2

    root = data_path("cxr", "kermany", "test")

    def crop_square(img: Image.Image) -> Image.Image:
        return v2.functional.center_crop(img, [min(img.size)])

    def tv(pil_resize: bool) -> tuple[torch.Tensor, torch.Tensor]:
        resize = v2.Resize((size, size), interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
        steps = [v2.Lambda(crop_square), resize, v2.ToImage()] if pil_resize else \
            [v2.Lambda(crop_square), v2.ToImage(), resize]
        ds = datasets.ImageFolder(str(root), transform=v2.Compose(steps))
        items = [ds[i] for i in range(len(ds))]
        return torch.stack([im for im, _ in items]), torch.tensor([lab for _, lab in items])

    zds, zw, zc = _timed(lambda: ImageFolderDataset(root, img_size=size, cache=True, workers=1))
    assert zds.images is not None
    z_img = zds.images.expand(-1, 3, -1, -1).to(torch.int16)
    for pil_resize, how in ((True, "PIL resize"), (False, "tensor resize")):
        (t_img, t_lab), tw, tc = _timed(lambda p=pil_resize: tv(p))
        same_labels = bool(torch.equal(t_lab, zds.targets))
        d = (t_img.to(torch.int16) - z_img).abs()
        rows.append({"job": f"image folder, 624 Kermany test at {size} px (tv {how})",
                     "zoo": f"{len(zds)} imgs, {zds.stored_chans} ch stored", "other": f"{len(t_img)} imgs, 3 ch",
                     "agreement": f"max abs d {int(d.max())}/255, mean {float(d.float().mean()):.3f}"
                                  + ("" if same_labels else ", LABELS DIFFER"),
                     "time_zoo_s": zw, "time_other_s": tw, "cpu_zoo_s": zc, "cpu_other_s": tc,
                     "detail": {"max_abs_diff_uint8": int(d.max()), "mean_abs_diff_uint8": float(d.float().mean()),
                                "share_of_pixels_differing": float((d > 0).float().mean()),
                                "same_labels_and_order": same_labels}})


def bench_gradcam(model: torch.nn.Module, probe: LogisticRegression, test: Any, rows: list[dict[str, Any]],
                  n_images: int, size: int) -> None:
    """zoo's grad_cam vs pytorch_grad_cam.GradCAM on the probe-headed backbone, predicted classes."""
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError as err:
        rows.append({"job": "Grad-CAM", "zoo": "-", "other": f"not installed ({err})", "agreement": "-",
                     "time_zoo_s": None, "time_other_s": None})
        return
    task = get_task("kermany_pneumonia")
    prep = Preprocess(task.data_config(get_pretrained_cfg(MODEL), size))
    pick = stratified_subset(test.labels, size=n_images, seed=0)
    x = prep(test.images[torch.from_numpy(pick)]).contiguous()
    model.reset_classifier(2)
    w, b = probe.folded_linear()
    with torch.no_grad():
        model.fc.weight.copy_(w)
        model.fc.bias.copy_(b)
    model.eval()
    with _threads_one():
        (zcam, logits), zw, zc = _timed(lambda: grad_cam(model, x))
        cls = logits.argmax(1).tolist()

        def lib() -> np.ndarray:
            with GradCAM(model=model, target_layers=[model.layer4[-1]]) as cam:
                return cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in cls])

        lcam, lw, lc = _timed(lib)
    z = zcam.numpy().reshape(len(x), -1)
    lib_maps = np.asarray(lcam).reshape(len(x), -1)
    corr = np.array([np.corrcoef(a, b)[0, 1] if a.std() > 0 and b.std() > 0 else np.nan
                     for a, b in zip(z, lib_maps, strict=True)])
    diff = float(np.abs(z - lib_maps).max())
    rows.append({"job": f"Grad-CAM, {n_images} Kermany test at {size} px (layer4)",
                 "zoo": f"{len(z)} maps {size}x{size}", "other": f"grad-cam {_version('grad-cam')}",
                 "agreement": f"corr min {np.nanmin(corr):.4f}, max abs d {diff:.1e}",
                 "time_zoo_s": zw, "time_other_s": lw, "cpu_zoo_s": zc, "cpu_other_s": lc,
                 "detail": {"pearson_per_image": [round(float(c), 6) for c in corr],
                            "pearson_mean": float(np.nanmean(corr)), "max_abs_diff": diff,
                            "test_indices": pick.tolist()}})


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    parser.add_argument("--gradcam-images", type=int, default=16)
    parser.add_argument("--gradcam-size", type=int, default=224)
    parser.add_argument("-o", "--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(0)
    torch.set_num_threads(1)
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    model, test, test_f, test_labels, probe = bench_probe(args.fractions, rows)
    bench_metrics(test_labels, probe.predict_proba(test_f), rows)
    bench_folders(rows)
    bench_gradcam(model, probe, test, rows, args.gradcam_images, args.gradcam_size)
    for r in rows:
        zt, lt = r.get("time_zoo_s"), r.get("time_other_s")
        r["ratio_other_over_zoo"] = None if not zt or lt is None else lt / zt
    cpu = cpu_info()["cpu"]
    env = {"cpu": cpu, "threads": 1, "usable_cpus": len(os.sched_getaffinity(0)),
           "load_average_end": os.getloadavg()[0], "torch": torch.__version__,
           "scikit-learn": _version("scikit-learn"), "torchvision": _version("torchvision"),
           "grad-cam": _version("grad-cam"), "model": MODEL, "seed": 0,
           "command": "nice python benchmarks/libraries.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "total_wall_s": time.perf_counter() - start}
    print(f"CPU {cpu}; 1 torch/BLAS thread; load average {env['load_average_end']:.1f}; "
          f"times are wall seconds (CPU seconds in {args.out.name})")
    head = f"| {'job':<58} | {'zoo':<28} | {'other':<28} | {'agreement':<30} | time zoo | time other | other/zoo |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        ratio = r["ratio_other_over_zoo"]
        print(f"| {r['job']:<58} | {r['zoo']:<28} | {r['other']:<28} | {r['agreement']:<30} | "
              f"{_fmt(r['time_zoo_s']):>8} | {_fmt(r['time_other_s']):>10} | "
              f"{'-' if ratio is None else f'{ratio:.2f}':>9} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps({"environment": env, "rows": rows}, indent=1) + "\n")
    print(f"written {args.out} in {env['total_wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
