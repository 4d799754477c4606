"""``zoo finetune``: a checkpoint + the user's labelled data -> a fine-tuned model directory to keep.

:func:`run_finetune` reads the data (:mod:`zoo.data.userdata`), splits off a seeded, stratified
validation set (or takes a given one), and trains with :func:`train_classifier` (2D / 3D
classification, multi-label) or :func:`train_segmentation` (2D image/mask pairs of any size). These
two are the protocol: a comparison loop calls them once per (checkpoint arm, seed, label subset).

Training: AdamW with a cosine schedule, optional layer-wise learning-rate decay
(``layer_decay``: the head gets ``lr``, each earlier top-level block ``layer_decay`` times the
next one's) or a frozen encoder, class-weighted loss, light geometric augmentation chosen by the
checkpoint's modality, early stopping on the validation loss (``patience``), the best epoch kept.
The binary decision threshold (and per-label thresholds for multi-label) is chosen on validation
(Youden's J). A state file is written after every epoch; ``resume=True`` continues exactly where
it stopped (same losses as an uninterrupted run). ``precision="bf16"`` runs the training forward and
loss under CPU autocast (:mod:`zoo.train.precision`); validation stays fp32.

Under ``torchrun`` (:mod:`zoo.train.distributed`: gloo, DDP) ``batch_size`` stays the *global*
batch: every process draws the same seeded batch (the samples a one-process run draws, augmented
the same way) and trains on its share (every W-th sample; disjoint, together the whole batch),
the gradients are averaged by DDP (classification: each share's loss scaled so that the step is the
global batch's, class weights included; segmentation: the shares' losses averaged). Rank 0
validates and broadcasts the result (so early stopping is decided once) and alone writes the run
directory, the state file and the progress bar. What still differs from one process: BatchNorm
sees each process's share only.

The run directory holds what :func:`zoo.save_for_hf` writes (``config.json`` with the head's class
names and decision rule, ``model.safetensors``, ``README.md``): ``zoo.create_model("local-dir:RUN",
pretrained=True)`` loads it; ``finetune.json`` records the starting weights (name, sha256), the
command, seed, data, per-epoch history and validation metrics.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import platform
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import __version__
from .._io import atomic_write, atomic_write_json
from ..data.augment import random_flip, random_resized_crop
from ..data.errors import DatasetError
from ..data.transforms import resolve_data_config
from ..data.userdata import (
    UserData,
    load_image_mask_pairs,
    load_images,
    load_volumes,
    open_user_data,
    train_val_split,
)
from ..train.distributed import Dist, all_mean, broadcast_from_main, setup_distributed
from ..train.precision import PrecisionError, check_precision, make_precision
from .harness import Preprocess, _predict_whole, build_classifier, build_segmentation_model, resolve_source
from .metrics import macro_auc_ovr, roc_auc

__all__ = [
    "FinetuneConfig",
    "FinetuneError",
    "FinetuneResult",
    "ClassificationData",
    "prepare_classification",
    "classifier_preprocess",
    "hu_window",
    "train_classifier",
    "train_segmentation",
    "choose_threshold",
    "segmentation_label_names",
    "run_finetune",
    "RECORD_NAME",
    "STATE_NAME",
]

_logger = logging.getLogger(__name__)
RECORD_NAME = "finetune.json"
STATE_NAME = "state.pt"
# light geometric augmentation per modality: (random-resized-crop scale, horizontal flip p, degrees)
_AUG_2D = {"cxr": ((0.8, 1.0), 0.0, 5.0), "fundus": ((0.7, 1.0), 0.5, 15.0), "": ((0.8, 1.0), 0.5, 10.0)}


class FinetuneError(ValueError):
    """A fine-tuning request that cannot run (the message names the fix)."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything that defines one fine-tuning run (recorded in ``finetune.json``)."""

    model: str
    data: str
    out: str
    val: str | None = None  # a given validation set (same format); default: split off val_fraction
    val_fraction: float = 0.2
    masks: str | None = None
    image_root: str | None = None
    img_size: int | None = None  # default: the checkpoint's input size (crop size for segmentation)
    scale: float = 1.0  # segmentation: rescale whole images first (e.g. 0.5 for large photos)
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.05
    layer_decay: float = 1.0
    freeze_encoder: bool = False
    class_weights: bool = True
    patience: int = 8
    pretrained: bool = True  # False: the same recipe from random init (the baseline)
    checkpoint_path: str | None = None
    precision: str = "fp32"  # fp32 | bf16: autocast of the training forward + loss (CPU); validation in fp32
    seed: int = 0
    resume: bool = False
    stop_after: int | None = None  # stop after this many epochs in all (continue later with resume)
    progress: bool = True
    label_names: tuple[str, ...] | None = None  # segmentation: the foreground classes' names, labels 1, 2, ...

    def validate(self) -> None:
        """Raise :class:`FinetuneError` naming the fix for any bad field."""
        for name in ("epochs", "batch_size", "patience", "img_size", "stop_after"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise FinetuneError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if not 0.0 < self.val_fraction < 1.0:
            raise FinetuneError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        if not 0.0 < self.layer_decay <= 1.0:
            raise FinetuneError(f"--layer-decay must be in (0, 1], got {self.layer_decay}")
        if self.lr <= 0 or self.weight_decay < 0 or self.scale <= 0:
            raise FinetuneError("--lr and --scale must be > 0 and --weight-decay >= 0")
        if self.freeze_encoder and self.layer_decay != 1.0:
            raise FinetuneError("--freeze-encoder trains the head only; drop --layer-decay (or the freeze)")
        if self.label_names is not None:
            names = [str(n).strip() for n in self.label_names]
            if not names or not all(names) or len(set(names)) != len(names) or any("," in n for n in names):
                raise FinetuneError(f"--label-names must be distinct, non-empty names separated by commas (e.g. "
                                    f"liver,spleen,kidneys), got {','.join(map(str, self.label_names))!r}")
        try:
            check_precision(self.precision, "cpu")
        except PrecisionError as err:
            raise FinetuneError(str(err)) from None

    def command(self) -> str:
        """The ``zoo finetune`` command that reproduces this run."""
        parts = ["zoo", "finetune", self.model, "--data", self.data, "--out", self.out]
        defaults = FinetuneConfig(model="", data="", out="")
        for f in dataclasses.fields(self):
            if f.name in ("model", "data", "out", "resume", "stop_after", "progress"):
                continue
            value, default = getattr(self, f.name), getattr(defaults, f.name)
            if value == default:
                continue
            flag = "--" + f.name.replace("_", "-")
            if f.name == "pretrained":
                parts.append("--random-init")
            elif f.name == "class_weights":
                parts.append("--no-class-weights")
            elif isinstance(value, bool):
                parts.append(flag)
            elif isinstance(value, (tuple, list)):
                parts += [flag, ",".join(map(str, value))]
            else:
                parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        return shlex.join(parts)

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the run it continues."""
        # label_names only name the outputs: a resumed run may add them
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in ("resume", "stop_after", "progress", "label_names")}


@dataclass
class ClassificationData:
    """uint8 training and validation inputs, labels (ids or 0/1 rows) and what they mean."""

    kind: str  # "classification" | "multilabel"
    classes: tuple[str, ...]
    train_x: torch.Tensor
    train_y: np.ndarray
    val_x: torch.Tensor
    val_y: np.ndarray

    def label_fraction(self, fraction: float, seed: int) -> ClassificationData:
        """The same data with a stratified, seeded ``fraction`` of the training labels (validation unchanged)."""
        from ..data.sampling import stratified_subset

        strata = self.train_y if self.train_y.ndim == 1 else self.train_y.argmax(1)
        idx = stratified_subset(strata, fraction=fraction, seed=seed)
        return dataclasses.replace(self, train_x=self.train_x[idx], train_y=self.train_y[idx])


@dataclass
class FinetuneResult:
    """What :func:`run_finetune` produced."""

    out: Path
    record: dict[str, Any]
    completed: bool  # False when stopped by ``stop_after`` (resume to finish)


# --- data --------------------------------------------------------------------------------------------
def _load_x(spec: UserData, size: tuple[int, ...], spacing: tuple[float, ...] | None,
            hu: tuple[float, float] | None) -> torch.Tensor:
    if spec.spatial_dims == 2:
        return load_images(spec.files, size[0])
    return load_volumes(spec.files, size, spacing, hu)


def prepare_classification(train: UserData, val: UserData, size: tuple[int, ...],
                           spacing: tuple[float, ...] | None = None,
                           hu: tuple[float, float] | None = (-1000.0, 1000.0)) -> ClassificationData:
    """Decode both splits at ``size`` (2D: (S,), 3D: (X, Y, Z); volumes resampled to ``spacing`` mm)."""
    assert train.labels is not None and val.labels is not None
    return ClassificationData(train.kind, train.classes, _load_x(train, size, spacing, hu), train.labels,
                              _load_x(val, size, spacing, hu), val.labels)


def hu_window(cfg: Any) -> tuple[float, float] | None:
    """The HU window a 3D checkpoint's volumes are mapped to [0, 255] with (None: per-volume min-max)."""
    it = cfg.intensity
    return (it.hu_min, it.hu_max) if it.kind == "hu_window" else None


def classifier_preprocess(cfg: Any, size: tuple[int, ...]) -> Preprocess:
    """uint8 inputs at ``size`` -> the classifier's input batch (the checkpoint's intensity preset).

    With :func:`hu_window` and :func:`~zoo.data.userdata.load_volumes` this is the whole path from a
    NIfTI file to a 3D classifier's input; ``zoo predict`` uses the same functions (no second copy)."""
    return Preprocess(resolve_data_config(cfg, input_size=(cfg.in_chans, *size)))


# --- the model, optimiser, augmentation ----------------------------------------------------------------
def _param_groups(model: nn.Module, lr: float, layer_decay: float, freeze_encoder: bool,
                  head: str = "fc") -> list[dict[str, Any]]:
    """One group per top-level block with parameters; block k from the end gets ``lr * layer_decay**k``."""
    blocks = [(name, [p for p in mod.parameters()]) for name, mod in model.named_children()]
    blocks = [(n, ps) for n, ps in blocks if ps]
    groups = []
    for k, (name, params) in enumerate(reversed(blocks)):
        if freeze_encoder and name != head:
            for p in params:
                p.requires_grad_(False)
            continue
        scale = 1.0 if name == head else layer_decay ** k
        groups.append({"params": params, "lr": lr * scale, "name": name})
    return groups


def _optimizer(groups: list[dict[str, Any]], weight_decay: float, total_steps: int) -> tuple[
        torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    opt = torch.optim.AdamW(groups, weight_decay=weight_decay)
    total = max(1, total_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))
    return opt, sched


def _augment(x: torch.Tensor, modality: str, g: torch.Generator) -> torch.Tensor:
    """Light geometric augmentation of a [0, 1] batch (2D: resized crop, flip, rotation; 3D: L-R flip)."""
    if x.ndim == 4:
        scale, hflip, degrees = _AUG_2D.get(modality, _AUG_2D[""])
        return random_resized_crop(x, tuple(x.shape[2:]), scale=scale, generator=g, hflip_p=hflip, degrees=degrees)
    return random_flip(x, 0.5, g, dims=(2,))[0]


def choose_threshold(y: np.ndarray, score: np.ndarray) -> float:
    """The score threshold maximising Youden's J (sensitivity + specificity - 1); ties: the middle one."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    if y.all() or not y.any():
        return 0.5
    cands = np.unique(s)
    best, best_t = -np.inf, [0.5]
    for t in cands:
        pred = s >= t
        j = pred[y].mean() + (~pred[~y]).mean() - 1.0
        if j > best + 1e-12:
            best, best_t = j, [float(t)]
        elif abs(j - best) <= 1e-12:
            best_t.append(float(t))
    # midpoint between the chosen score and the next lower one, so the rule generalises
    t = best_t[len(best_t) // 2]
    lower = cands[cands < t]
    return float((t + lower.max()) / 2) if lower.size else t


def _safe_auc(fn: Any, *args: Any) -> float | None:
    try:
        return float(fn(*args))
    except ValueError:  # a class absent from the validation set
        return None


def _class_metrics(kind: str, y: np.ndarray, logits: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validation metrics and the decision rule chosen on them."""
    if kind == "multilabel":
        prob = 1.0 / (1.0 + np.exp(-logits))
        thresholds = [choose_threshold(y[:, k], prob[:, k]) for k in range(y.shape[1])]
        aucs = [_safe_auc(roc_auc, y[:, k], prob[:, k]) for k in range(y.shape[1])]
        valid = [a for a in aucs if a is not None]
        pred = prob >= np.asarray(thresholds)
        return ({"auc": float(np.mean(valid)) if valid else None, "auc_per_label": aucs,
                 "exact_match": float((pred == y.astype(bool)).all(1).mean())},
                {"activation": "sigmoid", "thresholds": thresholds})
    prob = torch.softmax(torch.from_numpy(logits), 1).numpy()
    pred = prob.argmax(1)
    per_class = [float((pred[y == c] == c).mean()) for c in range(prob.shape[1]) if (y == c).any()]
    metrics: dict[str, Any] = {"auc": _safe_auc(macro_auc_ovr, y, prob), "acc": float((pred == y).mean()),
                               "balanced_acc": float(np.mean(per_class))}
    if prob.shape[1] != 2:
        return metrics, {"activation": "softmax", "rule": "argmax"}
    t = choose_threshold(y == 1, prob[:, 1])
    hard = prob[:, 1] >= t
    pos, neg = y == 1, y == 0
    metrics.update(threshold=t, sensitivity=float(hard[pos].mean()) if pos.any() else None,
                   specificity=float((~hard[neg]).mean()) if neg.any() else None,
                   acc_at_threshold=float((hard == pos).mean()))
    return metrics, {"activation": "softmax", "positive_class": 1, "threshold": t}


def _forward(model: nn.Module, x: torch.Tensor, prep: Preprocess, batch_size: int) -> torch.Tensor:
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            outs.append(model(prep(x[i:i + batch_size])).float())
    return torch.cat(outs)


# --- state (resume) ----------------------------------------------------------------------------------------
def _save_state(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp), fsync=False)


def _load_state(path: Path, identity: dict[str, Any]) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise FinetuneError(f"{path} cannot be read ({err}); start again without --resume in a new --out") from err
    saved = {"precision": "fp32", **state["identity"]}  # runs from before --precision trained in fp32
    diff = sorted(k for k in set(identity) | set(saved) if identity.get(k) != saved.get(k))
    if diff:
        raise FinetuneError(f"--resume: the run in {path.parent} was started with other settings ({', '.join(diff)}: "
                            f"{[saved.get(k) for k in diff]}); repeat its command with --resume, or "
                            "use a new --out")
    return state


def _progress(total: int, initial: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="epoch", dynamic_ncols=True, disable=not enabled)


# --- processes (torchrun) --------------------------------------------------------------------------------
def _check_world(d: Dist, n_train: int, batch: int, per_rank: int) -> None:
    """Refuse a process count the data cannot feed: each process needs ``per_rank`` samples of every batch."""
    if d.world == 1:
        return
    if n_train < d.world * per_rank:
        raise FinetuneError(f"torchrun started {d.world} processes but there are {n_train} training samples "
                            f"({per_rank} per process needed); use --nproc-per-node {max(1, n_train // per_rank)} "
                            "or fewer, or run without torchrun")
    if batch < d.world * per_rank:
        raise FinetuneError(f"--batch-size {batch} is the global batch, split across the {d.world} processes "
                            f"({per_rank} per process needed): use --batch-size {d.world * per_rank} or more, or "
                            "fewer processes")


def _share(d: Dist) -> slice:
    """This process's share of a global batch: every ``world``-th sample from its rank on."""
    return slice(d.rank, None, d.world)


def _ddp(model: nn.Module, d: Dist) -> nn.Module:
    """``model`` itself in one process; under torchrun its DDP wrapper (gradients averaged over the
    processes; every forward starts from rank 0's BatchNorm statistics)."""
    if d.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model)


# --- the protocol ------------------------------------------------------------------------------------------
def _opt_step(holder: dict[str, Any], loss: torch.Tensor) -> None:
    """One optimiser and schedule step on ``loss`` (the optimiser lives in ``holder``, built by _train_loop)."""
    opt, sched = holder["opt"], holder["sched"]
    opt.zero_grad(set_to_none=True)
    holder["amp"].backward_step(loss, opt)
    sched.step()


def _train_loop(model: nn.Module, groups: list[dict[str, Any]], steps_per_epoch: int, config: FinetuneConfig,
                seed: int, train_epoch: Any, validate: Any, state_path: Path | None, desc: str,
                frozen: bool, holder: dict[str, Any], d: Dist | None = None) -> dict[str, Any]:
    """Epochs with early stopping on the validation loss, a state file per epoch, exact resume.

    ``train_epoch(generator)`` trains through ``holder["net"]`` (the model, or its DDP wrapper) under
    ``holder["amp"].autocast()`` and steps the optimiser and schedule it finds in ``holder``; it returns
    this process's share of the epoch's mean loss (averaged over the processes here). ``validate()``
    runs on rank 0 only; its result is broadcast, so every process stops at the same epoch."""
    d = d or Dist()
    opt, sched = _optimizer(groups, config.weight_decay, config.epochs * steps_per_epoch)
    holder.update(opt=opt, sched=sched, amp=make_precision(config.precision, "cpu"), net=model)
    g = torch.Generator().manual_seed(seed)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"loss": math.inf, "epoch": 0, "state": None}
    worlds: list[int] = []
    times: list[dict[str, float]] = []  # per epoch: training and validation wall seconds (rank 0)
    start = 0
    if state_path is not None and config.resume:
        if not state_path.is_file():
            raise FinetuneError(f"--resume: no {STATE_NAME} in {state_path.parent}; run without --resume first")
        st = _load_state(state_path, config.identity())
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        g.set_state(st["generator"])
        history, best, start = st["history"], st["best"], st["epoch"]
        worlds = list(st.get("world_sizes", [1]))
        times = list(st.get("epoch_times_s", []))
        if d.main:
            _logger.info("resuming %s at epoch %d", desc, start)
            if worlds[-1] != d.world:  # the global batch does not depend on the process count
                _logger.info("the run was made with %d process(es), continued with %d: same global batches; "
                             "BatchNorm sees each process's share", worlds[-1], d.world)
        if not d.main:
            best = {**best, "state": None}
    worlds.append(d.world)
    holder["net"] = _ddp(model, d)  # after loading: DDP starts every process from rank 0's weights
    stop_at = min(config.epochs, config.stop_after or config.epochs)
    bad = len(history) - best["epoch"] if history else 0
    bar = _progress(config.epochs, start, desc, config.progress and d.main)
    epoch = start
    try:
        for epoch in range(start, stop_at):
            if bad >= config.patience:
                break
            model.train()
            if frozen:
                model.eval()  # frozen encoder: its BatchNorm statistics stay
            t0 = time.perf_counter()
            loss = train_epoch(g)
            if d.world > 1:
                loss = float(all_mean(torch.tensor([loss], dtype=torch.float64), d))
            t1 = time.perf_counter()
            val = broadcast_from_main(validate() if d.main else None, d)
            times.append({"epoch": epoch + 1, "train_s": round(t1 - t0, 3), "val_s": round(time.perf_counter() - t1, 3)})
            history.append({"epoch": epoch + 1, "train_loss": loss, **val})
            if val["val_loss"] < best["loss"]:
                best = {"loss": val["val_loss"], "epoch": epoch + 1,
                        "state": {k: v.detach().clone() for k, v in model.state_dict().items()} if d.main else None}
                bad = 0
            else:
                bad += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", val_loss=f"{val['val_loss']:.4f}")
            if d.main:
                _logger.info("%s epoch %d/%d: train loss %.4f, %s", desc, epoch + 1, config.epochs, loss,
                             ", ".join(f"{k} {v:.4f}" for k, v in val.items() if isinstance(v, float)))
            if state_path is not None and d.main:
                _save_state(state_path, {"identity": config.identity(), "model": model.state_dict(),
                                         "opt": opt.state_dict(), "sched": sched.state_dict(),
                                         "generator": g.get_state(), "history": history, "best": best,
                                         "epoch": epoch + 1, "world_sizes": worlds, "epoch_times_s": times})
    finally:
        bar.close()
    done = len(history)
    early = bad >= config.patience and done < config.epochs
    completed = early or done >= config.epochs
    return {"history": history, "best_epoch": best["epoch"], "best_state": best["state"],
            "completed": completed, "stopped_early": early, "world_sizes": worlds, "epoch_times_s": times}


def train_classifier(source: Any, arm: str, data: ClassificationData, prep: Preprocess, config: FinetuneConfig,
                     seed: int = 0, state_path: Path | None = None, modality: str = "",
                     parallel: Dist | None = None) -> dict[str, Any]:
    """Fine-tune a classifier of ``source`` (arm ``pretrained`` or ``random_init``) on ``data``.

    Returns the per-epoch history, the best epoch, the model at that epoch (``model``), its
    validation metrics and decision rule; ``completed`` is False when ``stop_after`` cut the run.
    ``parallel``: the torchrun process group (default: one process); only rank 0 gets the metrics.
    """
    d = parallel or Dist()
    n = len(data.train_x)
    bs = min(config.batch_size, n)
    _check_world(d, n, bs, per_rank=2)  # BatchNorm needs two samples per process
    n_out = len(data.classes)
    model = build_classifier(source, arm, num_classes=n_out, seed=seed)
    fmt = torch.channels_last if model.spatial_dims == 2 else torch.channels_last_3d
    model = model.to(memory_format=fmt)
    groups = _param_groups(model, config.lr, config.layer_decay, config.freeze_encoder)
    multilabel = data.kind == "multilabel"
    y_train = torch.from_numpy(data.train_y)
    if multilabel:
        pos = y_train.float().sum(0)
        pos_weight = ((len(y_train) - pos) / pos.clamp_min(1)) if config.class_weights else None

        def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.binary_cross_entropy_with_logits(logits, y.float(), pos_weight=pos_weight)

        def share_loss(logits: torch.Tensor, y: torch.Tensor, y_all: torch.Tensor) -> torch.Tensor:
            total = F.binary_cross_entropy_with_logits(logits, y.float(), pos_weight=pos_weight, reduction="sum")
            return total / y_all.numel()
    else:
        counts = torch.bincount(y_train, minlength=n_out).float()
        weight = (len(y_train) / (n_out * counts.clamp_min(1))) if config.class_weights else None

        def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits, y, weight=weight)

        def share_loss(logits: torch.Tensor, y: torch.Tensor, y_all: torch.Tensor) -> torch.Tensor:
            total = F.cross_entropy(logits, y, weight=weight, reduction="sum")
            return total / (weight[y_all].sum() if weight is not None else len(y_all))

    steps = math.ceil(n / bs)
    mine = _share(d)

    def train_epoch(g: torch.Generator) -> float:
        net, amp = holder["net"], holder["amp"]
        perm = torch.randperm(n, generator=g)
        total, count = 0.0, 0
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            if len(idx) < 2 * d.world:  # BatchNorm needs two samples (in each process)
                continue
            # every process augments the whole global batch (the same draws as one process), then takes its share
            x = prep.normalise(_augment(prep.unit(data.train_x[idx]), modality, g))
            y = y_train[idx]
            with amp.autocast():
                if d.world == 1:
                    loss = loss_fn(net(x).float(), y)
                else:  # this share's part of the global batch's loss, x world: DDP's mean of the gradients is the
                    # gradient of the global batch's (weighted) mean loss
                    loss = share_loss(net(x[mine]).float(), y[mine], y) * d.world
            _opt_step(holder, loss)
            total, count = total + loss.item() * len(idx), count + len(idx)
        return total / max(count, 1)

    def validate() -> dict[str, Any]:
        logits = _forward(model, data.val_x, prep, config.batch_size)
        val_loss = float(loss_fn(logits, torch.from_numpy(data.val_y)))
        auc = _class_metrics(data.kind, data.val_y, logits.numpy())[0]["auc"]
        return {"val_loss": val_loss, "val_auc": auc}

    # the optimiser is built inside _train_loop (so its state can be restored); _opt_step steps through it
    holder: dict[str, Any] = {}

    run = _train_loop(model, groups, steps, config, seed, train_epoch, validate, state_path,
                      f"{arm} seed {seed}", config.freeze_encoder, holder, d)
    if not d.main:
        return {**run, "model": model, "val_metrics": None, "decision": None, "n_train": n, "n_val": len(data.val_x)}
    if run["best_state"] is not None:
        model.load_state_dict(run["best_state"])
    logits = _forward(model, data.val_x, prep, config.batch_size)
    metrics, decision = _class_metrics(data.kind, data.val_y, logits.numpy())
    metrics["loss"] = float(loss_fn(logits, torch.from_numpy(data.val_y)))
    return {**run, "model": model, "val_metrics": metrics, "decision": decision, "n_train": n,
            "n_val": len(data.val_x)}


def _dice(prob: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> float:
    pred = prob >= threshold
    inter = np.logical_and(pred, target).sum()
    denom = pred.sum() + target.sum()
    return float(2.0 * inter / denom) if denom else 1.0


def train_segmentation(source: Any, arm: str, train: UserData, val: UserData, config: FinetuneConfig,
                       seed: int = 0, state_path: Path | None = None, test: UserData | None = None,
                       parallel: Dist | None = None) -> dict[str, Any]:
    """Fine-tune a 2D U-Net (:func:`~zoo.eval.harness.build_segmentation_model`) on image/mask pairs of
    any size: random ``img_size`` crops (images smaller than the crop are padded), whole-image
    inference (padded to a multiple of 32) on validation; Dice at 0.5, pooled over validation pixels.
    ``test`` (optional): pairs scored the same way with the kept model (``test_metrics``), used for nothing else.
    ``parallel``: the torchrun process group (default: one process); only rank 0 gets the metrics."""
    if train.spatial_dims == 3:
        return train_segmentation_3d(source, arm, train, val, config, seed, state_path, test, parallel=parallel)
    d = parallel or Dist()
    _check_world(d, len(train), config.batch_size, per_rank=1)
    s = config.img_size or 128
    if s % 32:
        raise FinetuneError(f"segmentation crops must be a multiple of 32 px (U-Net), got --img-size {s}")
    model = build_segmentation_model(source, arm, seed).to(memory_format=torch.channels_last)
    prep = Preprocess(resolve_data_config(source.cfg, input_size=(source.cfg.in_chans, s, s)))

    def tensors(spec: UserData) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        ims, masks = load_image_mask_pairs(spec, config.scale)
        xs = [prep.normalise((torch.from_numpy(im.copy()).permute(2, 0, 1).float() / 255.0)[None])[0] for im in ims]
        return xs, [torch.from_numpy(m)[None].float() for m in masks]

    tx, ty = tensors(train)
    vx, vy = tensors(val)
    groups = _param_groups(model, config.lr, config.layer_decay, config.freeze_encoder, head="__none__")
    if config.freeze_encoder:  # U-Net: freeze the encoder only (decoder and head train)
        for p in model.encoder.parameters():
            p.requires_grad_(False)
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": config.lr, "name": "decoder"}]
    crops_per_image = 16
    steps = math.ceil(len(tx) * crops_per_image / config.batch_size)

    def crop(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        which = torch.randint(len(tx), (config.batch_size,), generator=g)
        xb, yb = [], []
        for i in which.tolist():
            x, y = tx[i], ty[i]
            ph, pw = max(0, s - x.shape[1]), max(0, s - x.shape[2])
            if ph or pw:
                x, y = F.pad(x, (0, pw, 0, ph)), F.pad(y, (0, pw, 0, ph))
            t = int(torch.randint(x.shape[1] - s + 1, (1,), generator=g))
            lf = int(torch.randint(x.shape[2] - s + 1, (1,), generator=g))
            xb.append(x[:, t:t + s, lf:lf + s])
            yb.append(y[:, t:t + s, lf:lf + s])
        joint, _ = random_flip(torch.cat([torch.stack(xb), torch.stack(yb)], 1), 0.5, g, dims=(3,))
        return joint[:, :-1], joint[:, -1:]

    holder: dict[str, Any] = {}

    mine = _share(d)

    def train_epoch(g: torch.Generator) -> float:
        net, amp = holder["net"], holder["amp"]
        total = 0.0
        for _ in range(steps):
            xb, yb = crop(g)  # the global batch (the same crops as one process); this process trains on its share
            if d.world > 1:
                xb, yb = xb[mine], yb[mine]
            with amp.autocast():
                logits = net(xb.contiguous(memory_format=torch.channels_last)).float()
                p = torch.sigmoid(logits)
                loss = F.binary_cross_entropy_with_logits(logits, yb) + \
                    1.0 - (2.0 * (p * yb).sum() + 1.0) / (p.sum() + yb.sum() + 1.0)
            _opt_step(holder, loss)
            total += loss.item()
        return total / steps

    def predict(xs: list[torch.Tensor] | None = None) -> list[np.ndarray]:
        return [_predict_whole(model, x[None])[0] for x in (vx if xs is None else xs)]

    def scores(probs: list[np.ndarray], ys: list[torch.Tensor]) -> dict[str, Any]:
        flat_p = np.concatenate([p.ravel() for p in probs])
        flat_y = np.concatenate([y.numpy().ravel() for y in ys]).astype(bool)
        return {"dice": _dice(flat_p, flat_y),
                "dice_per_image": [_dice(p, y.numpy()[0].astype(bool)) for p, y in zip(probs, ys, strict=True)],
                "auc": _safe_auc(roc_auc, flat_y, flat_p)}

    def validate() -> dict[str, Any]:
        probs = predict()
        flat_p = np.concatenate([p.ravel() for p in probs])
        flat_y = np.concatenate([y.numpy().ravel() for y in vy]).astype(bool)
        eps = 1e-6
        bce = -np.mean(flat_y * np.log(flat_p + eps) + (~flat_y) * np.log(1 - flat_p + eps))
        dice = _dice(flat_p, flat_y)
        return {"val_loss": float(bce + 1.0 - dice), "val_dice": dice}

    run = _train_loop(model, groups, steps, config, seed, train_epoch, validate, state_path,
                      f"{arm} seed {seed}", False, holder, d)
    if not d.main:
        return {**run, "model": model, "val_metrics": None, "decision": None, "n_train": len(tx), "n_val": len(vx),
                "prep": prep}
    if run["best_state"] is not None:
        model.load_state_dict(run["best_state"])
    metrics = scores(predict(), vy)
    out = {**run, "model": model, "val_metrics": metrics, "decision": {"activation": "sigmoid", "threshold": 0.5},
           "n_train": len(tx), "n_val": len(vx), "prep": prep}
    if test is not None:
        sx, sy = tensors(test)
        out["test_metrics"] = scores(predict(sx), sy)
    return out


def segmentation_label_names(names: Sequence[str] | None, spatial_dims: int, num_classes: int) -> tuple[str, ...]:
    """The output names of a fine-tuned segmentation model: 2D one channel (``foreground`` or ``names[0]``);
    3D ``background`` then one name per foreground label (``label_1``, ... by default). A count of ``names``
    that does not fit raises :class:`FinetuneError` naming the fix."""
    if spatial_dims == 2:
        if names is not None and len(names) != 1:
            raise FinetuneError(f"2D segmentation has one foreground class (mask > 0); give one name, e.g. "
                                f"--label-names vessels, got {len(names)}")
        return (names[0],) if names else ("foreground",)
    if names is not None and len(names) != num_classes - 1:
        raise FinetuneError(f"--label-names gives {len(names)} name(s) but the label maps hold labels 1..{num_classes - 1}"
                            f": give {num_classes - 1}, one per foreground label in order")
    return ("background", *(names or (f"label_{c}" for c in range(1, num_classes))))


def _segmentation_model_3d(source: Any, arm: str, num_classes: int, seed: int) -> nn.Module:
    """A 3D U-Net with a ``num_classes`` head: a ``*_seg`` checkpoint loads encoder and decoder; an
    encoder checkpoint (``X``) becomes the encoder of ``X_seg`` (same width and norm) with a new decoder."""
    from ..meta.registry import UnknownModelError, get_arch_entry, get_pretrained_cfg
    from ..models.builder import create_model, head_trained_next

    cfg = source.cfg
    if get_arch_entry(source.name)[1] != "zoo.models.unet3d":
        raise FinetuneError(f"3D segmentation needs a 3D U-Net checkpoint (e.g. unet3d_small.pcrl_ct32); "
                            f"{source.name} is not one")
    torch.manual_seed(seed)
    kwargs = {k: v for k, v in cfg.arch_kwargs.items() if k in ("width", "norm", "gn_groups", "decoder")}
    if cfg.architecture.endswith("_seg"):
        load = {} if arm == "random_init" else (
            {"checkpoint_path": source.checkpoint_path} if source.checkpoint_path else {"pretrained": True})
        with head_trained_next():  # the head is what fine-tuning trains: no random-head warning
            return create_model(source.name, num_classes=num_classes, **load)
    seg_arch = f"{cfg.architecture}_seg"
    if arm == "pretrained" and source.checkpoint_path is None and cfg.tag:
        from ..meta.registry import is_model

        if is_model(f"{seg_arch}.{cfg.tag}") and get_pretrained_cfg(f"{seg_arch}.{cfg.tag}").has_weights:
            with head_trained_next():
                return create_model(f"{seg_arch}.{cfg.tag}", pretrained=True, num_classes=num_classes)  # + decoder
    try:
        seg = create_model(seg_arch, num_classes=num_classes, in_chans=cfg.in_chans, **kwargs)
    except UnknownModelError as err:
        raise FinetuneError(f"{source.name}: no segmentation network {seg_arch} to put its encoder in") from err
    if arm == "pretrained":
        enc = build_classifier(source, arm, num_classes=0, seed=seed).state_dict()
        missing, unexpected = seg.load_state_dict(enc, strict=False)
        if unexpected or any(k.startswith("down_tr") for k in missing):
            raise FinetuneError(f"{source.name}'s encoder does not fit {seg_arch}: {unexpected or missing}")
        torch.manual_seed(seed)
    return seg


def _tiles(shape: tuple[int, ...], cube: tuple[int, ...]) -> list[tuple[slice, ...]]:
    """Non-overlapping cubes covering a volume padded up to a multiple of ``cube`` (nothing left out)."""
    ranges = [range(0, math.ceil(n / c) * c, c) for n, c in zip(shape, cube, strict=True)]
    return [tuple(slice(o, o + c) for o, c in zip(origin, cube, strict=True))
            for origin in np.stack(np.meshgrid(*ranges, indexing="ij"), -1).reshape(-1, 3).tolist()]


def train_segmentation_3d(source: Any, arm: str, train: UserData, val: UserData, config: FinetuneConfig,
                          seed: int = 0, state_path: Path | None = None,
                          test: UserData | None = None, parallel: Dist | None = None) -> dict[str, Any]:
    """Fine-tune a 3D U-Net on NIfTI image / label-map pairs (labels 0..K-1, 0 = background).

    Volumes are reoriented to RAS, resampled to the checkpoint's spacing and HU-windowed; training
    uses random cubes of the checkpoint's input size (``img_size``: a cube edge), an epoch drawing as many
    as tile the training volumes once (at least 8 per volume); validation covers each whole volume with
    non-overlapping cubes (zero-padded at the far edges, 4 per forward pass). Cross-entropy +
    soft Dice; mean foreground Dice on validation (and on ``test``, if given, with the kept model).
    ``parallel``: the torchrun process group (default: one process); only rank 0 gets the metrics."""
    from ..data.userdata import load_volume_pairs

    d = parallel or Dist()
    _check_world(d, len(train), config.batch_size, per_rank=1)
    cfg = source.cfg
    cube = (config.img_size,) * 3 if config.img_size else tuple(cfg.input_size[1:])
    if any(c % 8 for c in cube):
        raise FinetuneError(f"3D U-Net cubes must be multiples of 8 voxels, got {cube}")
    hu = (cfg.intensity.hu_min, cfg.intensity.hu_max) if cfg.intensity.kind == "hu_window" else None
    tv, tl = load_volume_pairs(train, cfg.voxel_spacing, hu)
    vv, vl = load_volume_pairs(val, cfg.voxel_spacing, hu)
    k = int(max(int(lab.max()) for lab in tl + vl)) + 1
    if k < 2:
        raise DatasetError(f"{train.source}: every label map is all zero; segmentation needs foreground labels")
    segmentation_label_names(config.label_names, 3, k)  # a wrong count of --label-names stops here, not after training
    model = _segmentation_model_3d(source, arm, k, seed).to(memory_format=torch.channels_last_3d)
    groups = _param_groups(model, config.lr, config.layer_decay, False, head="out_tr")
    if config.freeze_encoder:
        for name, p in model.named_parameters():
            if name.startswith("down_tr"):
                p.requires_grad_(False)
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": config.lr, "name": "decoder"}]
    # an epoch draws as many random cubes as tile the training volumes once (at least 8 per volume)
    cubes_per_epoch = sum(max(8, len(_tiles(tuple(v.shape), cube))) for v in tv)
    steps = max(1, math.ceil(cubes_per_epoch / config.batch_size))
    holder: dict[str, Any] = {}

    def padded(v: torch.Tensor) -> torch.Tensor:
        pads = [max(0, c - n) for n, c in zip(v.shape, cube, strict=True)]
        return F.pad(v, [x for p in reversed(pads) for x in (0, p)]) if any(pads) else v

    def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(logits, 1)
        onehot = F.one_hot(y, k).movedim(-1, 1).float()
        inter = (p * onehot).sum((0, 2, 3, 4))[1:]
        denom = (p + onehot).sum((0, 2, 3, 4))[1:]
        return F.cross_entropy(logits, y) + 1.0 - ((2 * inter + 1) / (denom + 1)).mean()

    def train_epoch(g: torch.Generator) -> float:
        net, amp = holder["net"], holder["amp"]
        total = 0.0
        for _ in range(steps):
            xb, yb = [], []
            # every process draws the global batch's cubes (the same as one process) and cuts out its share
            for j, i in enumerate(torch.randint(len(tv), (config.batch_size,), generator=g).tolist()):
                v, lab = padded(tv[i]), padded(tl[i])
                o = [int(torch.randint(n - c + 1, (1,), generator=g)) for n, c in zip(v.shape, cube, strict=True)]
                if j % d.world != d.rank:
                    continue
                sl = tuple(slice(a, a + c) for a, c in zip(o, cube, strict=True))
                xb.append(v[sl].float()[None] / 255.0)
                yb.append(lab[sl])
            x, y = torch.stack(xb), torch.stack(yb)
            with amp.autocast():
                loss = loss_fn(net(x.contiguous(memory_format=torch.channels_last_3d)).float(), y)
            _opt_step(holder, loss)
            total += loss.item()
        return total / steps

    def predict(v: torch.Tensor) -> torch.Tensor:
        model.eval()
        full = [math.ceil(n / c) * c for n, c in zip(v.shape, cube, strict=True)]
        x = F.pad(v.float() / 255.0, [p for n, f in zip(reversed(v.shape), reversed(full), strict=True)
                                      for p in (0, f - n)])
        out = torch.zeros((k, *full))
        tiles = _tiles(tuple(v.shape), cube)
        with torch.no_grad():
            for i in range(0, len(tiles), 4):  # 4 cubes per forward pass
                batch = tiles[i:i + 4]
                logits = model(torch.stack([x[sl][None] for sl in batch]).contiguous(
                    memory_format=torch.channels_last_3d))
                for sl, lg in zip(batch, logits, strict=True):
                    out[(slice(None), *sl)] = lg
        return out[(slice(None), *(slice(0, n) for n in v.shape))]

    def dice_per_class(pred: torch.Tensor, lab: torch.Tensor) -> list[float | None]:
        out: list[float | None] = []
        for c in range(1, k):
            a, b = pred == c, lab == c
            denom = int(a.sum() + b.sum())
            out.append(2.0 * int((a & b).sum()) / denom if denom else None)
        return out

    def evaluate(vols: list[torch.Tensor] | None = None, labs: list[torch.Tensor] | None = None) -> tuple[
            float, list[float | None]]:
        losses, dices = [], []
        for v, lab in zip(vv if vols is None else vols, vl if labs is None else labs, strict=True):
            logits = predict(v)
            losses.append(float(loss_fn(logits[None], lab[None])))
            dices.append(dice_per_class(logits.argmax(0), lab))
        per_class = [float(np.mean(d)) if (d := [x[c] for x in dices if x[c] is not None]) else None
                     for c in range(k - 1)]
        return float(np.mean(losses)), per_class

    def validate() -> dict[str, Any]:
        loss, per_class = evaluate()
        present = [d for d in per_class if d is not None]
        return {"val_loss": loss, "val_dice": float(np.mean(present)) if present else 0.0}

    run = _train_loop(model, groups, steps, config, seed, train_epoch, validate, state_path,
                      f"{arm} seed {seed}", False, holder, d)
    if not d.main:
        return {**run, "model": model, "val_metrics": None, "decision": None, "n_train": len(tv), "n_val": len(vv),
                "num_classes": k, "cube": cube}
    if run["best_state"] is not None:
        model.load_state_dict(run["best_state"])
    loss, per_class = evaluate()
    present = [d for d in per_class if d is not None]
    metrics = {"dice": float(np.mean(present)) if present else 0.0, "dice_per_class": per_class, "loss": loss}
    out = {**run, "model": model, "val_metrics": metrics, "decision": {"activation": "softmax", "rule": "argmax"},
           "n_train": len(tv), "n_val": len(vv), "num_classes": k, "cube": cube}
    if test is not None:
        sv, sl = load_volume_pairs(test, cfg.voxel_spacing, hu)
        top = max(int(lab.max()) for lab in sl)
        if top >= k:
            raise DatasetError(f"{test.source}: the test label maps hold label {top}, which no training label map "
                               f"has (labels 0..{k - 1}); add training volumes with it, or relabel")
        loss, per_class = evaluate(sv, sl)
        present = [d for d in per_class if d is not None]
        out["test_metrics"] = {"dice": float(np.mean(present)) if present else 0.0, "dice_per_class": per_class,
                               "loss": loss}
    return out


# --- the whole run -------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _check_out(out: Path, resume: bool) -> None:
    if resume:
        return
    if out.exists() and any(out.iterdir()):
        raise FinetuneError(f"--out {out} already holds files; pass --resume to continue that run, or choose a "
                            "new (or empty) directory")


def run_finetune(config: FinetuneConfig, invocation: str | None = None, *,
                 save: Callable[..., Any]) -> FinetuneResult:
    """Read the data, fine-tune, write the model directory and its record (see the module docstring).

    ``save(model, directory, metrics=...)`` writes the model folder: :func:`zoo.save_for_hf` (passed in,
    as the export layer sits above this one; :func:`zoo.finetune` and ``zoo finetune`` pass it).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process calls it: DDP on gloo (CPU), rank 0 writes
    ``out``; every process returns the same :class:`FinetuneResult`."""
    start, cpu_start = time.perf_counter(), time.process_time()
    if not callable(save):
        raise TypeError("run_finetune needs save=zoo.save_for_hf (or another writer of the model folder)")
    config.validate()
    d = setup_distributed("cpu")
    try:
        return _run_finetune(config, invocation, save, d, start, cpu_start)
    finally:
        if d.owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _run_finetune(config: FinetuneConfig, invocation: str | None, save: Callable[..., Any], d: Dist,
                  start: float, cpu_start: float) -> FinetuneResult:
    out = Path(config.out).expanduser()
    _check_out(out, config.resume)
    source = resolve_source(config.model, config.checkpoint_path)
    cfg = source.cfg
    arm = "pretrained" if config.pretrained and source.has_pretrained else "random_init"
    if config.pretrained and not source.has_pretrained:
        raise FinetuneError(f"{config.model} has no weights; pass a name with weights (see `zoo list --pretrained`) "
                            "or --random-init for the random-init baseline")
    data = open_user_data(config.data, masks=config.masks, image_root=config.image_root)
    if data.spatial_dims != cfg.spatial_dims:
        raise FinetuneError(f"{config.data} is {data.spatial_dims}D data but {config.model} is a "
                            f"{cfg.spatial_dims}D model; pick a {data.spatial_dims}D checkpoint (`zoo list`)")
    if config.val is not None:
        val = open_user_data(config.val, classes=data.classes if data.kind != "segmentation" else None,
                             image_root=config.image_root)
        if val.kind != data.kind:
            raise FinetuneError(f"--val {config.val} is {val.kind} data but --data is {data.kind}")
        train, split = data, {"given": str(config.val)}
    else:
        tr, va = train_val_split(data, config.val_fraction, config.seed)
        train, val = data.subset(tr), data.subset(va)
        split = {"val_fraction": config.val_fraction, "seed": config.seed, "stratified": data.labels is not None}
    if config.label_names is not None and data.kind != "segmentation":
        raise FinetuneError(f"--label-names names segmentation labels; the classes of {config.data} come from its "
                            f"{'folders' if data.format == 'class-folders' else 'CSV'} ({', '.join(data.classes)}): "
                            "drop --label-names")
    if data.kind == "segmentation" and data.spatial_dims == 2:  # 3D: checked once the label maps are read
        segmentation_label_names(config.label_names, 2, 1)
    min_train = 1 if data.kind == "segmentation" else 2  # segmentation trains on many random crops of each
    if len(train) < min_train or len(val) < 1:
        raise DatasetError(f"{config.data}: {len(train)} training and {len(val)} validation samples; at least "
                           f"{min_train} and 1 are needed. Add data or change --val-fraction.")
    if d.main:
        _logger.info("train: %s", train.describe())
        _logger.info("val:   %s", val.describe())
        out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_NAME
    if data.kind == "segmentation":
        result = train_segmentation(source, arm, train, val, config, config.seed, state_path, parallel=d)
        size: tuple[int, ...] = result["cube"] if data.spatial_dims == 3 else (config.img_size or 128,) * 2
        global_batch = config.batch_size
    else:
        size = (config.img_size,) * cfg.spatial_dims if config.img_size else tuple(cfg.input_size[1:])
        prep = classifier_preprocess(cfg, size)
        cdata = prepare_classification(train, val, size, cfg.voxel_spacing, hu_window(cfg))
        result = train_classifier(source, arm, cdata, prep, config, config.seed, state_path, cfg.modality,
                                  parallel=d)
        global_batch = min(config.batch_size, len(train))
    command = config.command()
    if d.world > 1:
        command = f"torchrun --nproc_per_node={d.world} -m zoo.cli " + command.removeprefix("zoo ")
    record: dict[str, Any] = {
        "format": "zoo-finetune/1",
        "zoo_version": __version__,
        "command": command,
        "invocation": invocation,
        "config": dataclasses.asdict(config),
        "start": {"name": config.model, "arm": arm,
                  "sha256": source.sha256 if arm == "pretrained" else None,
                  "path": str(source.weights_path) if arm == "pretrained" else None},
        "data": {"path": str(data.source), "format": data.format, "kind": data.kind, "spatial_dims": data.spatial_dims,
                 "classes": list(data.classes), "split": split, "n_train": len(train), "n_val": len(val),
                 "train_counts": train.counts(), "val_counts": val.counts(),
                 "val_files": [str(f) for f in val.files]},
        "input_size": [cfg.in_chans, *size],
        "seed": config.seed,
        "history": result["history"],
        "completed": result["completed"],
        "stopped_early": result["stopped_early"],
        "best_epoch": result["best_epoch"],
        "epoch_times_s": result["epoch_times_s"],  # wall seconds per epoch: training, validation (rank 0)
        "precision": {**make_precision(config.precision, "cpu").record(), "validation": "fp32"},
        "processes": {"world_size": d.world, "backend": "gloo" if d.world > 1 else None,
                      "batch": "global: --batch-size samples per step, split across the processes",
                      "global_batch": global_batch,
                      "per_process_batch": [len(range(r, global_batch, d.world)) for r in range(d.world)],
                      "world_sizes": result["world_sizes"]},
        "torch_version": torch.__version__,
        "num_threads": torch.get_num_threads(),
        "cpu": _cpu_model(),
    }
    if not d.main:  # rank 0 writes the run directory; every process returns its record
        record = broadcast_from_main(None, d)
        return FinetuneResult(out, record, completed=record["completed"])
    if not result["completed"]:
        record["wall_time_s"] = round(time.perf_counter() - start, 3)
        record["cpu_time_s"] = round(time.process_time() - cpu_start, 3)
        atomic_write_json(out / RECORD_NAME, record)
        return FinetuneResult(out, broadcast_from_main(record, d), completed=False)
    model = result["model"]
    metrics = result["val_metrics"]
    record["val_metrics"] = metrics
    record["decision"] = result["decision"]
    record["val_metrics_note"] = (f"measured on the {len(val)} validation samples that also chose the best epoch "
                                  "and the decision threshold: an optimistic estimate")
    # the fine-tuned model's config: the checkpoint's, with the head, its names and its input
    base = model.pretrained_cfg
    label_names = data.classes
    if data.kind == "segmentation":
        label_names = segmentation_label_names(config.label_names, data.spatial_dims, result.get("num_classes", 2))
        if data.spatial_dims == 3:  # the per-class Dice under the labels' names too
            metrics["dice_per_label"] = dict(zip(label_names[1:], metrics["dice_per_class"], strict=True))
    start_desc = f"{config.model} (sha256 {source.sha256})" if arm == "pretrained" else f"{cfg.architecture} (random init)"
    # 2D segmentation trained on images resized by --scale: predictions resize the same way (and back)
    image_scale = config.scale if data.kind == "segmentation" and data.spatial_dims == 2 else base.image_scale
    model.pretrained_cfg = base.replace(
        tag="finetuned", label_names=tuple(label_names), decision=result["decision"],
        input_size=(base.in_chans, *size), image_scale=image_scale,
        notes=f"Fine-tuned by `zoo finetune` from {start_desc} on {data.source} ({data.format}, {len(train)} "
              f"training / {len(val)} validation samples); see finetune.json.")
    scalar = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    save(model, out, metrics={f"val_{k}": v for k, v in scalar.items()})
    record["wall_time_s"] = round(time.perf_counter() - start, 3)
    record["cpu_time_s"] = round(time.process_time() - cpu_start, 3)  # all threads of this process
    record["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    atomic_write_json(out / RECORD_NAME, record)
    return FinetuneResult(out, broadcast_from_main(record, d), completed=True)
