"""The evaluation harness: ``zoo eval NAME --task TASK --protocol linear|finetune``.

For a model name (``arch`` or ``arch.tag``, or ``arch`` + ``checkpoint_path``) and a task of
:mod:`zoo.eval.tasks`, every seed runs the protocol twice, from the checkpoint and from random init
with the same seed, budget and hyperparameters, so each result is a pair:

- ``linear`` (classification): the backbone is frozen; pooled features are extracted once (cached on
  disk per checkpoint sha256, task, input and split) and a logistic regression (:mod:`zoo.eval.probe`)
  is fitted on the labelled subset;
- ``finetune`` (classification): the whole network with a new head, AdamW, cosine schedule, a few epochs;
- segmentation (``drive_vessels``): a U-Net built from the checkpoint (:func:`build_segmentation_model`)
  trained on random crops; ``linear`` freezes its encoder (decoder and head trained), ``finetune``
  trains everything. F1 and AUC are pooled over the test pixels inside the FOV masks.

``label_fraction`` keeps a stratified, seeded subset of the training labels (different per seed).
Optionally the test metrics under corruptions (:mod:`zoo.eval.robustness`). :func:`run_eval` returns
a JSON-ready results dict (:func:`save_results`); :mod:`zoo.report` turns it into registry
metrics and model-card tables.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import math
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import __version__
from .._io import atomic_write
from ..data.augment import random_flip
from ..data.sampling import stratified_subset
from ..data.transforms import DataConfig, _apply_intensity, create_transform
from ..hub import ResolvedWeights, cache_dir, record_checkpoint, resolve_weights_record
from ..meta.cfg import Intensity, PretrainedCfg
from ..meta.registry import get_pretrained_cfg
from ..models.builder import create_model, head_trained_next
from ..models.resnet import ResNet
from ..models.unet2d import UNetResNet
from ..train.precision import PrecisionError, make_precision
from ..train.schedules import warmup_cosine_lambda
from .metrics import classification_metrics, segmentation_metrics, summarize
from .probe import L2_GRID, LogisticRegression
from .robustness import CORRUPTIONS, corrupt
from .tasks import Split, Task, get_task

__all__ = [
    "usable_cpus",
    "set_threads",
    "PROTOCOLS",
    "ARMS",
    "EvalConfig",
    "CheckpointSource",
    "Preprocess",
    "resolve_source",
    "build_classifier",
    "build_segmentation_model",
    "extract_features",
    "prepare_context",
    "run_eval",
    "save_results",
    "default_output_path",
]

_logger = logging.getLogger(__name__)

PROTOCOLS = ("linear", "finetune")
ARMS = ("pretrained", "random_init")
CROPS_PER_IMAGE = 16  # segmentation: one epoch = this many random crops per training image
_UNIT = Intensity(kind="unit", mean=None, std=None)


@dataclass(frozen=True)
class EvalConfig:
    """Everything that defines one evaluation (recorded in the results file)."""

    model: str
    task: str
    protocol: str = "linear"
    label_fraction: float = 1.0
    seeds: int = 3
    epochs: int | None = None  # finetune / segmentation; default: the task's
    img_size: int | None = None  # default: the task's (crop size for segmentation)
    batch_size: int | None = None
    lr: float = 5e-4
    weight_decay: float = 0.05
    max_train: int | None = None  # keep a stratified subset of the training pool (seed 0)
    max_test: int | None = None
    checkpoint_path: str | None = None
    robustness: bool = False
    cache: bool = True
    precision: str = "fp32"  # autocast of the training loops (finetune, segmentation); zoo.train.precision

    def validate(self, task: Task) -> None:
        """Raise ValueError naming the fix for any bad field."""
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if not 0.0 < self.label_fraction <= 1.0:
            raise ValueError(f"label fraction must be in (0, 1] (e.g. 0.01, 0.1, 1), got {self.label_fraction}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        for name in ("epochs", "img_size", "batch_size", "max_train", "max_test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.robustness and task.kind != "classification":
            raise ValueError(f"--robustness is for classification tasks; {task.name} is a {task.kind} task")
        try:
            make_precision(self.precision, "cpu")
        except PrecisionError as err:
            raise ValueError(str(err)) from None
        if self.precision != "fp32" and self.protocol == "linear" and task.kind == "classification":
            raise ValueError("--precision applies to the training protocols (finetune, segmentation); the linear "
                             "probe extracts fp32 features and fits in float64: drop --precision")
        if task.kind == "segmentation" and self.img_size is not None and self.img_size % 32:
            raise ValueError(f"{task.name} crops must be a multiple of 32 px (U-Net), got --img-size {self.img_size}")

    def command(self) -> str:
        """The ``zoo eval`` command that reproduces this evaluation."""
        parts = ["zoo", "eval", self.model, "--task", self.task, "--protocol", self.protocol,
                 "--label-fraction", f"{self.label_fraction:g}", "--seeds", str(self.seeds)]
        for flag, value in (("--epochs", self.epochs), ("--img-size", self.img_size),
                            ("--batch-size", self.batch_size), ("--max-train", self.max_train),
                            ("--max-test", self.max_test), ("--checkpoint-path", self.checkpoint_path)):
            if value is not None:
                parts += [flag, str(value)]
        if self.lr != EvalConfig.lr:
            parts += ["--lr", f"{self.lr:g}"]
        if self.weight_decay != EvalConfig.weight_decay:
            parts += ["--weight-decay", f"{self.weight_decay:g}"]
        if self.robustness:
            parts.append("--robustness")
        if self.precision != "fp32":
            parts += ["--precision", self.precision]
        return shlex.join(parts)


# --- the checkpoint and the models built from it ---------------------------------------------------
@dataclass(frozen=True)
class CheckpointSource:
    """A model name and, when it has weights, the record of what is loaded (resolved and hashed once)."""

    name: str
    cfg: PretrainedCfg
    checkpoint_path: Path | None = None  # an explicit file (``--checkpoint-path``)
    weights_path: Path | None = None  # the file actually loaded for the pretrained arm
    sha256: str | None = None
    weights: ResolvedWeights | None = None  # passed to create_model: no second resolution or hash

    @property
    def has_pretrained(self) -> bool:
        return self.weights_path is not None

    @property
    def arms(self) -> tuple[str, ...]:
        return ARMS if self.has_pretrained else ("random_init",)


def resolve_source(name: str, checkpoint_path: str | os.PathLike[str] | None = None) -> CheckpointSource:
    """Find the weights of ``name`` (registered, or ``checkpoint_path``); none means random init only."""
    cfg = get_pretrained_cfg(name)
    if checkpoint_path is not None:
        path = Path(checkpoint_path)
        if not path.is_file():
            raise FileNotFoundError(f"--checkpoint-path {path} does not exist")
        rec = record_checkpoint(path, name=name)  # hashed once; every arm and seed reuses the record
        return CheckpointSource(name, cfg, path, rec.path, rec.sha256, rec)
    if cfg.has_weights:
        rec = resolve_weights_record(cfg)  # verifies the registered sha256 (or reads its stamp)
        return CheckpointSource(name, cfg, None, rec.path, rec.sha256, rec)
    _logger.warning("%s has no registered weights and no --checkpoint-path: evaluating random init only", name)
    return CheckpointSource(name, cfg)


def _load_kwargs(source: CheckpointSource, arm: str) -> dict[str, Any]:
    if arm not in ARMS:
        raise ValueError(f"arm must be one of {ARMS}, got {arm!r}")
    if arm == "random_init":
        return {"pretrained": False}
    if not source.has_pretrained:
        raise ValueError(f"{source.name} has no weights: only the random_init arm exists")
    if source.weights is not None:
        return {"pretrained": source.checkpoint_path is None, "checkpoint_path": source.weights}
    if source.checkpoint_path is not None:
        return {"pretrained": False, "checkpoint_path": source.checkpoint_path}
    return {"pretrained": True}


def build_classifier(source: CheckpointSource, arm: str, num_classes: int, seed: int) -> nn.Module:
    """The model of ``arm`` with a ``num_classes`` head (0: pooled features); the seed fixes all random init."""
    torch.manual_seed(seed)
    with head_trained_next():  # the head is what the protocol trains: no random-head warning
        return create_model(source.name, num_classes=num_classes, **_load_kwargs(source, arm))


def build_segmentation_model(source: CheckpointSource, arm: str, seed: int, num_classes: int = 1) -> nn.Module:
    """A 2D U-Net with a ``num_classes`` head built from the checkpoint.

    A 2D U-Net checkpoint (``unet_resnet18.*``) loads encoder and decoder; a 2D ResNet backbone checkpoint
    (any method) becomes the encoder of ``unet_resnet18`` (same depth) with a new decoder. Which one it is
    comes from the network itself (its class), not from its name.
    """
    with torch.random.fork_rng(devices=[]):  # look at the network without moving the seeded random state
        network = type(create_model(source.name, pretrained=False))
    torch.manual_seed(seed)
    load = _load_kwargs(source, arm)
    if source.cfg.spatial_dims == 2 and issubclass(network, UNetResNet):
        with head_trained_next():
            return create_model(source.name, num_classes=num_classes, **load)
    if source.cfg.spatial_dims == 2 and issubclass(network, ResNet):
        depth = int(source.cfg.arch_kwargs.get("depth", 18))
        seg = create_model("unet_resnet18", num_classes=num_classes, depth=depth, in_chans=source.cfg.in_chans)
        if arm == "pretrained":
            backbone = create_model(source.name, num_classes=0, **load)
            seg.encoder.load_state_dict(backbone.state_dict(), strict=True)
        return seg
    raise ValueError(
        f"no 2D segmentation model can be built from {source.name} ({network.__name__}, "
        f"{source.cfg.spatial_dims}D); use a 2D ResNet backbone (e.g. resnet18.pcrl_kermany64) or unet_resnet18"
    )


# --- preprocessing ---------------------------------------------------------------------------------
class Preprocess:
    """uint8 images -> model input batch: the model's resize/crop, an optional corruption in [0, 1],
    then its intensity normalisation (channels-last memory format)."""

    def __init__(self, config: DataConfig) -> None:
        self.config = config
        self.geometry = create_transform(dataclasses.replace(config, intensity=_UNIT))

    def unit(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Resized/cropped batch in [0, 1] (before normalisation)."""
        if self.config.spatial_dims == 3:
            items = [self.geometry(torch.as_tensor(v).float() / 255.0) for v in images]
        else:
            items = [self.geometry(im) for im in images]
        return torch.stack(items)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the intensity preset to a [0, 1] batch."""
        if self.config.intensity.kind != "unit":
            x = torch.stack([_apply_intensity(t, self.config.intensity) for t in x])
        fmt = torch.channels_last if x.ndim == 4 else torch.channels_last_3d
        return x.contiguous(memory_format=fmt)

    def __call__(self, images: torch.Tensor | np.ndarray, corruption: tuple[str, int] | None = None, seed: int = 0) -> torch.Tensor:
        x = self.unit(images)
        if corruption is not None:
            x = corrupt(x, corruption[0], corruption[1], seed=seed)
        return self.normalise(x)


def _batched_forward(model: nn.Module, images: torch.Tensor | np.ndarray, prep: Preprocess, batch_size: int,
                     corruption: tuple[str, int] | None = None) -> np.ndarray:
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = prep(images[i:i + batch_size], corruption, seed=i)
            outs.append(model(x).float().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 0), dtype=np.float32)


def extract_features(model: nn.Module, images: torch.Tensor | np.ndarray, prep: Preprocess, batch_size: int = 64,
                     corruption: tuple[str, int] | None = None, cache_key: str | None = None) -> np.ndarray:
    """Pooled features ``(N, D)`` of a frozen model, cached on disk under ``cache_key`` when given."""
    path = None
    if cache_key is not None:
        digest = hashlib.sha256(cache_key.encode()).hexdigest()[:40]
        path = cache_dir() / "eval_features" / f"{digest}.npy"
        if path.is_file():
            feats = np.load(path)
            if len(feats) == len(images):
                _logger.debug("features from cache %s", path)
                return feats
    feats = _batched_forward(model, images, prep, batch_size, corruption)
    if feats.ndim != 2:
        raise ValueError(
            f"the model returns {feats.ndim}D outputs, not pooled (N, D) features: use a backbone "
            "(e.g. resnet18, unet3d_small), not a segmentation model, for classification tasks"
        )
    if path is not None:
        def save(tmp: Path) -> None:
            with tmp.open("wb") as fh:
                np.save(fh, feats, allow_pickle=False)

        atomic_write(path, save, fsync=False)
    return feats


# --- one run (arm, seed) ---------------------------------------------------------------------------
@dataclass
class _Context:
    config: EvalConfig
    task: Task
    source: CheckpointSource
    train: Split
    test: Split
    prep: Preprocess
    img_size: int
    epochs: int
    batch_size: int
    memo: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def model_key(self, arm: str, seed: int) -> str:
        if arm == "pretrained":
            return f"ckpt:{self.source.sha256}:{self.source.name}"
        cfg = self.source.cfg
        return f"random:{cfg.architecture}:{sorted(cfg.arch_kwargs.items())}:seed{seed}:torch{torch.__version__}"

    def features(self, model: nn.Module, arm: str, seed: int, split: str,
                 corruption: tuple[str, int] | None = None) -> np.ndarray:
        data = self.train if split == "train" else self.test
        index_hash = hashlib.sha256(data.indices.tobytes()).hexdigest()[:16]
        key = "|".join([self.model_key(arm, seed), self.task.name, repr(self.prep.config), split, index_hash,
                        str(corruption), f"zoo{__version__}"])
        if key not in self.memo:
            self.memo[key] = extract_features(model, data.images, self.prep, self.batch_size, corruption,
                                              key if self.config.cache else None)
        return self.memo[key]

    def labelled(self, seed: int) -> np.ndarray:
        """Indices (into the training pool) of this seed's labelled subset."""
        frac = self.config.label_fraction
        if self.task.kind == "segmentation":
            n = len(self.train)
            k = max(1, round(frac * n))
            return np.sort(np.random.default_rng(seed).permutation(n)[:k])
        return stratified_subset(self.train.labels, fraction=frac, seed=seed)


def _robustness_eval(predict: Callable[[tuple[str, int] | None], np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in CORRUPTIONS:
        out[name] = {str(s): classification_metrics(labels, predict((name, s))) for s in (1, 2, 3)}
    return out


def _linear_seed(ctx: _Context, arm: str, seed: int) -> dict[str, Any]:
    model = build_classifier(ctx.source, arm, num_classes=0, seed=seed)
    if model.spatial_dims == 2:
        model = model.to(memory_format=torch.channels_last)
    train_f = ctx.features(model, arm, seed, "train")
    test_f = ctx.features(model, arm, seed, "test")
    sub = ctx.labelled(seed)
    probe = LogisticRegression(ctx.task.num_classes).fit(train_f[sub], ctx.train.labels[sub])
    result: dict[str, Any] = {"n_train": len(sub), "l2": probe.l2,
                              **classification_metrics(ctx.test.labels, probe.predict_proba(test_f))}
    if ctx.config.robustness:
        result["robustness"] = _robustness_eval(
            lambda c: probe.predict_proba(ctx.features(model, arm, seed, "test", c)), ctx.test.labels)
    return result


def _random_flips(tensors: list[torch.Tensor], dims: tuple[int, ...], g: torch.Generator) -> list[torch.Tensor]:
    """Flip the same samples of every tensor ``(N, C, *spatial)`` along the spatial axes ``dims`` (p = 0.5)."""
    if not dims:
        return tensors
    chans = [t.shape[1] for t in tensors]
    joint, _ = random_flip(torch.cat(tensors, 1), 0.5, g, dims=[2 + d for d in dims])
    return list(joint.split(chans, 1))


def _cosine_adamw(params: list[nn.Parameter], lr: float, weight_decay: float, total_steps: int) -> tuple[
        torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    total = max(1, total_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine_lambda(total))
    return opt, sched


def _finetune_seed(ctx: _Context, arm: str, seed: int) -> dict[str, Any]:
    task = ctx.task
    model = build_classifier(ctx.source, arm, num_classes=task.num_classes, seed=seed)
    fmt = torch.channels_last if task.spatial_dims == 2 else torch.channels_last_3d
    model = model.to(memory_format=fmt)
    sub = ctx.labelled(seed)
    images, labels = ctx.train.images[sub], ctx.train.labels[sub]
    bs = min(ctx.batch_size, len(sub))
    steps_per_epoch = math.ceil(len(sub) / bs)
    opt, sched = _cosine_adamw(list(model.parameters()), ctx.config.lr, ctx.config.weight_decay,
                               ctx.epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(seed)
    amp = make_precision(ctx.config.precision, "cpu")
    losses = []
    for epoch in range(ctx.epochs):
        model.train()
        perm = torch.randperm(len(sub), generator=g).numpy()
        total, count = 0.0, 0
        for i in range(0, len(sub), bs):
            idx = perm[i:i + bs]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            (x,) = _random_flips([ctx.prep(images[idx])], task.flip_dims, g)
            with amp.autocast():
                loss = F.cross_entropy(model(x), torch.from_numpy(labels[idx]))
            opt.zero_grad(set_to_none=True)
            amp.backward_step(loss, opt)
            sched.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
        losses.append(total / max(count, 1))
        _logger.info("%s seed %d epoch %d/%d: loss %.4f", arm, seed, epoch + 1, ctx.epochs, losses[-1])

    def predict(c: tuple[str, int] | None) -> np.ndarray:
        logits = _batched_forward(model, ctx.test.images, ctx.prep, ctx.batch_size, c)
        return torch.softmax(torch.from_numpy(logits), dim=1).numpy()

    result: dict[str, Any] = {"n_train": len(sub), "train_loss": losses,
                              **classification_metrics(ctx.test.labels, predict(None))}
    if ctx.config.robustness:
        result["robustness"] = _robustness_eval(predict, ctx.test.labels)
    return result


def _dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    return 1.0 - (2.0 * inter + 1.0) / (p.sum() + target.sum() + 1.0)


def _predict_whole(model: nn.Module, x: torch.Tensor, multiple: int = 32) -> np.ndarray:
    """Sigmoid probabilities of whole images ``(N, C, H, W)``, padded (replicate) to ``multiple``."""
    model.eval()
    h, w = x.shape[2:]
    ph, pw = -h % multiple, -w % multiple
    out = []
    with torch.no_grad():
        for img in x:
            padded = F.pad(img[None], (0, pw, 0, ph), mode="replicate").contiguous(memory_format=torch.channels_last)
            out.append(torch.sigmoid(model(padded))[0, 0, :h, :w].numpy())
    return np.stack(out)


def _segmentation_seed(ctx: _Context, arm: str, seed: int) -> dict[str, Any]:
    model = build_segmentation_model(ctx.source, arm, seed).to(memory_format=torch.channels_last)
    sub = ctx.labelled(seed)
    x_all = ctx.prep(ctx.train.images[sub])
    y_all = torch.from_numpy(ctx.train.labels[sub]).float()[:, None]
    frozen = ctx.config.protocol == "linear"
    if frozen:
        for p in model.encoder.parameters():
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    s = ctx.img_size
    h, w = x_all.shape[2:]
    if s > min(h, w):
        raise ValueError(f"crop size {s} exceeds the images ({h} x {w}); use a smaller --img-size")
    steps_per_epoch = math.ceil(len(sub) * CROPS_PER_IMAGE / ctx.batch_size)
    opt, sched = _cosine_adamw(params, ctx.config.lr, ctx.config.weight_decay, ctx.epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(seed)
    amp = make_precision(ctx.config.precision, "cpu")
    losses = []
    for epoch in range(ctx.epochs):
        model.train()
        if frozen:
            model.encoder.eval()  # frozen BatchNorm statistics too
        total = 0.0
        for _ in range(steps_per_epoch):
            which = torch.randint(len(sub), (ctx.batch_size,), generator=g)
            tops = torch.randint(h - s + 1, (ctx.batch_size,), generator=g)
            lefts = torch.randint(w - s + 1, (ctx.batch_size,), generator=g)
            xb = torch.stack([x_all[i, :, t:t + s, lf:lf + s] for i, t, lf in zip(which, tops, lefts, strict=True)])
            yb = torch.stack([y_all[i, :, t:t + s, lf:lf + s] for i, t, lf in zip(which, tops, lefts, strict=True)])
            xb, yb = _random_flips([xb, yb], ctx.task.flip_dims, g)
            with amp.autocast():
                logits = model(xb.contiguous(memory_format=torch.channels_last))
            logits = logits.float()
            loss = F.binary_cross_entropy_with_logits(logits, yb) + _dice_loss(logits, yb)
            opt.zero_grad(set_to_none=True)
            amp.backward_step(loss, opt)
            sched.step()
            total += loss.item()
        losses.append(total / steps_per_epoch)
        _logger.info("%s seed %d epoch %d/%d: loss %.4f", arm, seed, epoch + 1, ctx.epochs, losses[-1])
    prob = _predict_whole(model, ctx.prep(ctx.test.images))
    assert ctx.test.fov is not None
    return {"n_train": len(sub), "train_loss": losses,
            **segmentation_metrics(ctx.test.labels, prob, ctx.test.fov)}


# --- threads -----------------------------------------------------------------------------------------
def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota if there is one."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads once for an evaluation: ``threads``, or :func:`usable_cpus` if ``None``.

    Feature extraction and fine-tuning use them; the linear probe's L-BFGS fit runs on one thread
    whatever this says (:class:`~zoo.eval.probe.LogisticRegression`), so nothing is nested or oversubscribed.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    n = threads or usable_cpus()
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
    return n


# --- the whole evaluation --------------------------------------------------------------------------
def _summarise_robustness(per_seed: list[dict[str, Any]], metrics: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"clean": {m: summarize([r[m] for r in per_seed]) for m in metrics}}
    for name in CORRUPTIONS:
        out[name] = {
            sev: {m: summarize([r["robustness"][name][sev][m] for r in per_seed]) for m in metrics}
            for sev in ("1", "2", "3")
        }
    return out


def prepare_context(config: EvalConfig) -> _Context:
    """Validate ``config``, find the weights, load the data and the preprocessing of one evaluation."""
    task = get_task(config.task)
    config.validate(task)
    source = resolve_source(config.model, config.checkpoint_path)
    task.check_model(source.cfg.spatial_dims, config.model)
    size = config.img_size or task.default_size
    load_size = size if task.kind == "classification" else None
    train = task.load("train", config.max_train, load_size)
    test = task.load("test", config.max_test, load_size)
    prep = Preprocess(task.data_config(source.cfg, size))
    return _Context(config, task, source, train, test, prep, size, config.epochs or task.default_epochs,
                    config.batch_size or task.default_batch_size)


def run_eval(config: EvalConfig, invocation: str | None = None) -> dict[str, Any]:
    """Run every (arm, seed) of ``config``; returns the results dict (see the module docstring)."""
    start = time.perf_counter()
    ctx = prepare_context(config)
    task, source, train, test, size = ctx.task, ctx.source, ctx.train, ctx.test, ctx.img_size
    epochs, batch_size, data_config = ctx.epochs, ctx.batch_size, ctx.prep.config
    runner = _segmentation_seed if task.kind == "segmentation" else \
        (_linear_seed if config.protocol == "linear" else _finetune_seed)
    seeds = list(range(config.seeds))
    runs: dict[str, Any] = {}
    robustness: dict[str, Any] = {}
    for arm in source.arms:
        per_seed = []
        for seed in seeds:
            t0 = time.perf_counter()
            r = runner(ctx, arm, seed)
            r = {"seed": seed, **r, "wall_time_s": round(time.perf_counter() - t0, 3)}
            per_seed.append(r)
            _logger.info("%s %s %s seed %d: %s (%.1f s)", config.model, task.name, arm, seed,
                         ", ".join(f"{m}={r[m]:.4f}" for m in task.metrics), r["wall_time_s"])
        runs[arm] = {
            "per_seed": [{k: v for k, v in r.items() if k != "robustness"} for r in per_seed],
            "mean": {m: summarize([r[m] for r in per_seed])["mean"] for m in task.metrics},
            "std": {m: summarize([r[m] for r in per_seed])["std"] for m in task.metrics},
        }
        if config.robustness:
            robustness[arm] = _summarise_robustness(per_seed, task.metrics)
    trains_network = config.protocol == "finetune" or task.kind == "segmentation"
    results: dict[str, Any] = {
        "format": "zoo-eval/1",
        "zoo_version": __version__,
        "command": config.command(),
        "invocation": invocation,
        "model": config.model,
        "task": task.name,
        "task_description": task.description,
        "kind": task.kind,
        "protocol": config.protocol,
        "label_fraction": config.label_fraction,
        "seeds": seeds,
        "metrics": list(task.metrics),
        "img_size": size,
        "input_size": list(data_config.input_size) if task.kind == "classification"
        else [data_config.in_chans, size, size],
        "intensity": dataclasses.asdict(data_config.intensity),
        "epochs": epochs if trains_network else None,
        "batch_size": batch_size,
        "lr": config.lr if trains_network else None,
        "weight_decay": config.weight_decay if trains_network else None,
        "linear_probe": None if trains_network else {
            "model": "multinomial logistic regression on standardised pooled features (scikit-learn, lbfgs)",
            "l2_grid": list(L2_GRID), "l2_selection": "stratified 3-fold CV log-loss on the labelled subset",
        },
        "max_train": config.max_train,
        "max_test": config.max_test,
        "n_train_pool": len(train),
        "n_test": len(test),
        "checkpoint": None if not source.has_pretrained else {
            "name": config.model, "path": str(source.weights_path), "sha256": source.sha256,
            "registered": source.checkpoint_path is None,
        },
        "arms": list(source.arms),
        "runs": runs,
        "robustness": robustness or None,
        "torch_version": torch.__version__,
        "num_threads": torch.get_num_threads(),
        "probe_threads": None if trains_network else 1,
        "precision": config.precision if trains_network else None,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(time.perf_counter() - start, 3),
    }
    return results


DEFAULT_RESULTS_DIR = "zoo-results"  # relative to the working directory: never the repository's results/


def default_output_path(config: EvalConfig, out_dir: str | os.PathLike[str] = DEFAULT_RESULTS_DIR) -> Path:
    """``<out_dir>/<model>__<task>__<protocol>__<percent>pct[__<size>px].json`` (the size when ``img_size`` is
    given, so runs at two input sizes do not overwrite each other); ``out_dir`` defaults to ``./zoo-results``."""
    pct = f"{config.label_fraction * 100:g}".replace(".", "p")
    size = f"__{config.img_size}px" if config.img_size else ""
    return Path(out_dir) / f"{config.model}__{config.task}__{config.protocol}__{pct}pct{size}.json"


def save_results(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a results dict as indented JSON (parent directories created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path
