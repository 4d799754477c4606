"""Which starting weights for MY data: ``zoo compare PATTERN --data PATH`` and ``zoo eval NAME --data PATH``.

One engine, two commands. The candidates are the registered checkpoints whose ``network.tag`` matches
PATTERN (:func:`zoo.list_pretrained`'s wildcards), of the data's dimensionality (2D / 3D) and task
(classification needs pooled features; segmentation a network finetune can put in a U-Net), plus one
random-init arm per architecture among them. A checkpoint that cannot run here (weights not on this
machine, e.g. upstream entries that need ``zoo convert``; another dimensionality; another task) is
listed in ``skipped`` with the reason, never dropped silently.

Pairing: for seed ``s`` every arm sees the same train/test split (seeded, stratified; or the given
``--test`` set) and, per label fraction, the same seeded, stratified subset of the training part
(at least one example per class: when a fraction is raised to reach that, the results say so).

Protocols:

- ``linear`` (classification, 2D and 3D, multi-label too): frozen pooled features with each
  checkpoint's own preprocessing (its pretrained cfg), computed once per checkpoint for all images
  and reused across seeds and fractions (random-init features: once per seed, as the weights are the
  seed's), then :class:`~zoo.eval.probe.LogisticRegression` on the labelled subset (one binary probe
  per label for multi-label);
- ``finetune``: :func:`~zoo.eval.finetune.train_classifier` / :func:`~zoo.eval.finetune.train_segmentation`
  for a fixed number of epochs; the epoch kept is the one with the lowest loss on the labelled subset
  itself: no test image takes part in any choice. Segmentation data: finetune only.

Metrics on the test images: classification AUC (macro one-vs-rest; binary: of the positive class;
multi-label: mean per-label AUC over the labels the test set holds both ways) and accuracy (multi-label:
mean per-label accuracy at probability 0.5); segmentation Dice (2D: pooled over the test pixels at 0.5;
3D: mean foreground Dice per class).

Ranking and ties (:func:`paired_difference`, :func:`rank_arms`): per label fraction, arms are ordered
by the mean of the primary metric (AUC, Dice). Two arms are *tied* when the paired per-seed
differences ``d_s`` (same split, same labelled subset) do not show a difference: a two-sided paired
t-test at the 5% level does not reject a zero mean, i.e. ``|mean(d)| <= t(0.975, n-1) * sd(d) / sqrt(n)``
(``t`` = 12.71, 4.30, 2.78 for 2, 3, 5 seeds). The best arm and every arm tied with it share rank
1 (shown ``=1``); the rest are ranked again the same way (competition ranking: ``=1, =1, 3``). With one
seed there is no spread, so nothing can be told apart and every arm ties. The gain over random init
is the mean (and sd) of the paired differences to the random init of the same architecture; its
verdict (better / tie / worse) uses the same test.

Cost: parameters, input size, and wall time per seed on this machine = the time to produce one seed's
result from scratch: feature extraction of that arm's model (once per checkpoint, so shared across seeds
and fractions) + the probe fit (linear), or the whole fine-tuning run (finetune). Decoding the images,
shared by every arm, is counted once (``decode_s``).

Resumable: every (arm, fraction, seed) cell is written atomically to ``OUT/cells/`` as it finishes;
the same command continues where it stopped. A fine-tuning cell also keeps its per-epoch state next to
it while it runs, so an interrupted cell continues from its last epoch (exactly, as ``zoo finetune
--resume``), not from the start. A cell depends on the data, the arm, the recipe, its label
fraction and its seed only (the split and the labelled subset of seed ``s`` are the same whatever the
number of seeds), so the same comparison with more ``--seeds`` or other ``--label-fractions`` extends it:
cells already there are reused and only the new ones computed. ``OUT/compare-run.json`` records what the
comparison is; another comparison in the same OUT (other data, candidates, protocol or recipe) is refused
(``overwrite=True`` replaces it). Outputs:
``OUT/compare.json`` (everything), ``OUT/compare.md`` (ranked tables), ``OUT/compare.png`` (metric vs
label fraction).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import math
import os
import platform
import shlex
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from .._io import atomic_write_json, atomic_write_text
from .._machine import cpu_info
from ..data.sampling import stratified_subset
from ..data.transforms import resolve_data_config
from ..data.userdata import UserData, load_images, load_volumes, open_user_data, train_val_split
from ..hub import IntegrityError, WeightsNotFoundError, resolve_weights_record
from ..meta.registry import get_pretrained_cfg, list_pretrained
from ..models.resnet import ResNet
from ..models.unet2d import UNetResNet
from ..models.unet3d import UNet3D, UNet3DEncoder
from .finetune import (
    ClassificationData,
    FinetuneConfig,
    train_classifier,
    train_segmentation,
)
from .harness import (
    CheckpointSource,
    Preprocess,
    build_classifier,
    build_segmentation_model,
    extract_features,
)
from .metrics import macro_auc_ovr, roc_auc, summarize
from .probe import LogisticRegression

__all__ = [
    "CompareConfig",
    "CompareError",
    "Arm",
    "PROTOCOLS",
    "FORMAT",
    "RUN_NAME",
    "JSON_NAME",
    "MD_NAME",
    "PNG_NAME",
    "parse_fractions",
    "data_name",
    "default_out",
    "select_arms",
    "paired_difference",
    "rank_arms",
    "run_compare",
    "markdown_tables",
    "plot_compare",
]

_logger = logging.getLogger(__name__)

PROTOCOLS = ("linear", "finetune")
FORMAT = "zoo-compare/1"
RUN_NAME = "compare-run.json"
STATE_SUFFIX = ".state.pt"  # next to a finetune cell's file while it runs: its per-epoch state (resume)
JSON_NAME = "compare.json"
MD_NAME = "compare.md"
PNG_NAME = "compare.png"
CELLS = "cells"
DEFAULT_RESULTS_DIR = "zoo-results"  # relative to the working directory: never the repository's results/
_OURS = (RUN_NAME, JSON_NAME, MD_NAME, PNG_NAME, CELLS)


class CompareError(ValueError):
    """A comparison that cannot run as asked (the message names the fix)."""


# --- configuration -----------------------------------------------------------------------------------
def parse_fractions(text: str | Sequence[float]) -> tuple[float, ...]:
    """``"0.01,0.1,1"`` -> ``(0.01, 0.1, 1.0)`` (sorted, duplicates removed); each in (0, 1]."""
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    if not items or any(t == "" for t in items):
        raise CompareError(f"label fractions: {text!r} is not a comma-separated list of numbers; give e.g. 0.01,0.1,1")
    values = []
    for t in items:
        try:
            v = float(t)
        except (TypeError, ValueError):
            raise CompareError(f"label fractions: {t!r} is not a number; give e.g. 0.01,0.1,1") from None
        if not (math.isfinite(v) and 0.0 < v <= 1.0):
            raise CompareError(f"label fractions: {t} is outside (0, 1]; each is a share of the training labels, "
                               "e.g. 0.01,0.1,1")
        values.append(v)
    return tuple(sorted(set(values)))


@dataclass(frozen=True)
class CompareConfig:
    """Everything that defines one comparison (recorded in ``compare.json``).

    ``pattern`` is a wildcard over ``network.tag`` names (``zoo compare``), or, with ``single=True``, one
    model name (``zoo eval NAME --data``: that checkpoint and its random init).
    """

    pattern: str
    data: str
    out: str | None = None  # default: ./zoo-results/compare-<data name>
    test: str | None = None  # a given test set (same format); default: split off test_fraction per seed
    test_fraction: float = 0.2
    label_fractions: tuple[float, ...] = (1.0,)
    protocol: str = "linear"
    seeds: int = 3
    masks: str | None = None
    image_root: str | None = None
    epochs: int = 20  # finetune
    batch_size: int = 16  # finetune
    lr: float = 1e-3  # finetune (AdamW, cosine)
    weight_decay: float = 0.05
    img_size: int | None = None  # segmentation: training crop (2D; default 128) / cube edge (3D)
    scale: float = 1.0  # 2D segmentation: rescale whole images first
    single: bool = False
    overwrite: bool = False

    def validate(self) -> None:
        """Raise :class:`CompareError` naming the fix for any bad field."""
        if self.protocol not in PROTOCOLS:
            raise CompareError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        parse_fractions(self.label_fractions)
        if not 0.0 < self.test_fraction < 1.0:
            raise CompareError(f"--test-fraction must be in (0, 1), e.g. 0.2; got {self.test_fraction}")
        for name in ("seeds", "epochs", "batch_size", "img_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise CompareError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.lr <= 0 or self.weight_decay < 0 or self.scale <= 0:
            raise CompareError("--lr and --scale must be > 0 and --weight-decay >= 0")

    def output_dir(self) -> Path:
        """``out``, or ``./zoo-results/compare-<data name>``."""
        return Path(self.out).expanduser() if self.out else Path(DEFAULT_RESULTS_DIR) / f"compare-{data_name(self.data)}"

    def command(self) -> str:
        """The command that reproduces this comparison."""
        if self.single:
            parts = ["zoo", "eval", self.pattern, "--data", self.data, "--protocol", self.protocol,
                     "--label-fraction", ",".join(f"{f:g}" for f in parse_fractions(self.label_fractions))]
        else:
            parts = ["zoo", "compare", self.pattern, "--data", self.data, "--protocol", self.protocol,
                     "--label-fractions", ",".join(f"{f:g}" for f in parse_fractions(self.label_fractions))]
        parts += ["--seeds", str(self.seeds)]
        defaults = CompareConfig(pattern="", data="")
        for flag, name in (("--test", "test"), ("--test-fraction", "test_fraction"), ("--masks", "masks"),
                           ("--image-root", "image_root"), ("--epochs", "epochs"), ("--batch-size", "batch_size"),
                           ("--lr", "lr"), ("--weight-decay", "weight_decay"), ("--img-size", "img_size"),
                           ("--scale", "scale")):
            value = getattr(self, name)
            if value is None or value == getattr(defaults, name):
                continue
            if self.protocol == "linear" and name in ("epochs", "batch_size", "lr", "weight_decay"):
                continue
            parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        if self.out and not self.single:
            parts += ["--out", self.out]
        return shlex.join(parts)

    def finetune_config(self, model: str, img_size: int | None, resume: bool = False) -> FinetuneConfig:
        """The recipe of one finetune cell: fixed epochs (patience never runs out); ``resume`` continues the
        cell from its state file."""
        return FinetuneConfig(model=model, data=self.data, out="", epochs=self.epochs, batch_size=self.batch_size,
                              lr=self.lr, weight_decay=self.weight_decay, patience=self.epochs + 1,
                              img_size=img_size, scale=self.scale, progress=False, masks=self.masks,
                              image_root=self.image_root, resume=resume)


def data_name(path: str | os.PathLike[str]) -> str:
    """A short name for a data set: a directory's name, or ``<folder>-<stem>`` for a CSV (``hrf-labels``)."""
    p = Path(path).expanduser()
    raw = f"{p.parent.name}-{p.stem}" if p.suffix else p.name
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in raw).strip("._-") or "data"


def default_out(data: str | os.PathLike[str], out_dir: str | os.PathLike[str] = DEFAULT_RESULTS_DIR) -> Path:
    """``<out_dir>/compare-<data name>`` (``out_dir`` defaults to ``./zoo-results``)."""
    return Path(out_dir) / f"compare-{data_name(data)}"


# --- the arms ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Arm:
    """One starting point: a checkpoint (``pretrained``) or an architecture from random init."""

    key: str  # stable id: the checkpoint name, or random:<network>:<digest>
    label: str  # shown in tables: "resnet18.swcl_fundus64", "resnet18 (random init)"
    kind: str  # "pretrained" | "random_init"
    source: CheckpointSource
    network: str  # the network actually trained (a U-Net for segmentation)
    baseline: str | None = None  # key of the random-init arm of the same architecture (pretrained arms)

    @property
    def file_id(self) -> str:
        """A file-name-safe form of ``key``."""
        return "".join(c if c.isalnum() or c in "._-" else "-" for c in self.key)

    @property
    def input_size(self) -> tuple[int, ...]:
        return tuple(self.source.cfg.input_size)


def _built_model(source: CheckpointSource, kind: str, num_classes: int) -> nn.Module:
    """The random-init network an arm of ``source`` trains (seed 0), without moving the global RNG."""
    with torch.random.fork_rng(devices=[]):
        if kind == "segmentation" and source.cfg.spatial_dims == 2:
            return build_segmentation_model(source, "random_init", seed=0)
        if kind == "segmentation":
            from .finetune import _segmentation_model_3d  # what finetune builds for 3D segmentation

            return _segmentation_model_3d(source, "random_init", 2, seed=0)
        return build_classifier(source, "random_init", num_classes=num_classes, seed=0)


_NETWORK_TYPES: dict[str, type] = {}


def _network_type(name: str) -> type:
    """The class of the network of ``name`` (built once per architecture and arguments, random weights)."""
    cfg = get_pretrained_cfg(name)
    key = f"{cfg.architecture}:{sorted(cfg.arch_kwargs.items())}"
    if key not in _NETWORK_TYPES:
        from ..models.builder import create_model

        with torch.random.fork_rng(devices=[]):
            _NETWORK_TYPES[key] = type(create_model(name, pretrained=False))
    return _NETWORK_TYPES[key]


def _task_misfit(name: str, kind: str, spatial_dims: int) -> str | None:
    """Why the network of ``name`` cannot serve this task, or None (the network's class decides, as in
    :func:`~zoo.eval.harness.build_segmentation_model`)."""
    network = _network_type(name)
    if kind != "segmentation":
        if issubclass(network, (UNetResNet, UNet3D)):
            return "a segmentation network (U-Net), not a classifier: compare it on image + mask data"
        return None
    if spatial_dims == 2 and not issubclass(network, (ResNet, UNetResNet)):
        return f"no 2D segmentation U-Net can be built from {network.__name__} (a ResNet or unet_resnet18 can)"
    if spatial_dims == 3 and not issubclass(network, (UNet3DEncoder, UNet3D)):
        return f"no 3D segmentation U-Net can be built from {network.__name__} (the unet3d family can)"
    return None


def _weights_record(name: str) -> tuple[Any, str | None]:
    """(ResolvedWeights, None), or (None, why the weights cannot be used on this machine). Never downloads."""
    cfg = get_pretrained_cfg(name)
    try:
        return resolve_weights_record(cfg, download=False), None
    except WeightsNotFoundError:
        if cfg.is_official and cfg.convert_from:
            return None, (f"official upstream weights, not converted on this machine: get {cfg.origin or 'the file'} "
                          f"and run `zoo convert --from {cfg.convert_from} FILE --name {name}`")
        return None, f"weights not on this machine: run `zoo download {name}` (or set ZOO_WEIGHTS_DIR to a mirror)"
    except IntegrityError as err:
        return None, f"the local copy fails its sha256 check ({str(err).splitlines()[0]}): `zoo download --force {name}`"


def select_arms(pattern: str, spatial_dims: int, kind: str, num_classes: int, single: bool = False,
                protocol: str = "linear") -> tuple[list[Arm], list[dict[str, str]]]:
    """The arms of a comparison and the skipped checkpoints (``{"name", "reason"}``).

    Candidates: ``pattern`` over :func:`zoo.list_pretrained` (``single``: exactly that model name), kept
    when their dimensionality and task fit and their weights are on this machine. Random init: one arm
    per architecture among them; two checkpoints share it when their random-init networks are the same
    module tree (``repr``) at the same input size. It takes the preprocessing of the first of them (by
    name).
    """
    if single:
        cfg = get_pretrained_cfg(pattern)  # an unknown name raises with the closest names
        names = [cfg.name]
    else:
        names = list_pretrained(pattern)
        if not names:
            raise CompareError(f"no checkpoint matches {pattern!r}; `zoo list --pretrained` lists the network.tag "
                               "names (wildcards allowed, e.g. 'resnet18.*' or '*fundus*')")
    skipped: list[dict[str, str]] = []
    sources: list[CheckpointSource] = []
    other_dims = []
    for name in names:
        cfg = get_pretrained_cfg(name)
        if cfg.spatial_dims != spatial_dims:
            other_dims.append(name)
            skipped.append({"name": name, "reason": f"a {cfg.spatial_dims}D checkpoint; the data are {spatial_dims}D"})
            continue
        misfit = _task_misfit(name, kind, spatial_dims)
        if misfit:
            skipped.append({"name": name, "reason": misfit})
            continue
        if not cfg.has_weights:  # zoo eval NAME --data on a network without weights: random init only
            sources.append(CheckpointSource(name, cfg))
            continue
        rec, why = _weights_record(name)
        if why:
            skipped.append({"name": name, "reason": why})
            continue
        sources.append(CheckpointSource(name, cfg, None, rec.path, rec.sha256, rec))
    if single and skipped:
        raise CompareError(f"{names[0]}: {skipped[0]['reason']}")
    if not sources:
        if other_dims and len(other_dims) == len(names):
            raise CompareError(f"{pattern!r} matches only {3 if spatial_dims == 2 else 2}D checkpoints "
                               f"({', '.join(other_dims[:4])}{' ...' if len(other_dims) > 4 else ''}) but the data are "
                               f"{spatial_dims}D; pick {spatial_dims}D ones from `zoo list --pretrained`")
        reasons = "; ".join(f"{s['name']}: {s['reason']}" for s in skipped[:3])
        raise CompareError(f"no checkpoint matching {pattern!r} can run on this {spatial_dims}D {kind} data ({reasons}); "
                           "see `zoo list --pretrained`")
    head = num_classes if protocol == "finetune" else 0
    groups: dict[tuple[str, tuple[int, ...]], list[CheckpointSource]] = {}
    networks: dict[tuple[str, tuple[int, ...]], str] = {}
    built: dict[str, tuple[str, str]] = {}  # one build per architecture and arguments
    for src in sources:
        cfg = src.cfg
        arch = f"{cfg.architecture}:{sorted(cfg.arch_kwargs.items())}:{cfg.in_chans}"
        if arch not in built:
            model = _built_model(src, kind, head)
            built[arch] = (hashlib.sha256(repr(model).encode()).hexdigest()[:10], model.pretrained_cfg.architecture)
        key = (built[arch][0], tuple(cfg.input_size))
        groups.setdefault(key, []).append(src)
        networks[key] = built[arch][1]
    arms: list[Arm] = []
    labels = [f"{networks[k]} (random init)" for k in groups]
    for (key, members), label in zip(groups.items(), labels, strict=True):
        rep = sorted(members, key=lambda s: s.name)[0]
        network = networks[key]
        if labels.count(label) > 1:
            label = f"{network} (random init, as {rep.name})"
        rkey = f"random:{network}:{key[0]}:{'x'.join(str(s) for s in key[1])}"
        arms.append(Arm(rkey, label, "random_init", CheckpointSource(rep.name, rep.cfg), network))
        arms += [Arm(s.name, s.name, "pretrained", s, network, rkey) for s in members if s.has_pretrained]
    arms.sort(key=lambda a: (a.kind != "pretrained", a.key))
    return arms, skipped


# --- statistics: paired differences, ties, ranks ---------------------------------------------------------
def _t_quantile(df: int) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.special import stdtrit  # scipy comes with scikit-learn; scipy.stats takes 3x longer to import

    return float(stdtrit(df, 0.975))


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Paired per-seed differences ``a_s - b_s``: mean, sd (ddof 1), the 95% half-width
    ``t(0.975, n-1) * sd / sqrt(n)``, and ``distinct`` (the mean lies outside it; never with one seed)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"need two equal-length, non-empty per-seed lists, got {len(a)} and {len(b)}")
    n = int(d.size)
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    half = _t_quantile(n - 1) * sd / math.sqrt(n) if n > 1 else math.inf
    return {"per_seed": d.tolist(), "mean": mean, "sd": sd, "n": n, "half_width": half,
            "distinct": bool(n > 1 and abs(mean) > half)}


def rank_arms(per_seed: dict[str, Sequence[float]]) -> dict[str, dict[str, Any]]:
    """Competition ranks with ties: ``{key: {"rank", "label", "tied_with"}}`` (higher values are better).

    The arm with the best mean and every arm whose paired difference to it is not distinct
    (:func:`paired_difference`) share its rank (``"=1"``); the others are ranked again the same way.
    """
    means = {k: float(np.mean(v)) for k, v in per_seed.items()}
    remaining = sorted(per_seed, key=lambda k: (-means[k], k))
    out: dict[str, dict[str, Any]] = {}
    rank = 1
    while remaining:
        best = remaining[0]
        group = [k for k in remaining if k == best or not paired_difference(per_seed[best], per_seed[k])["distinct"]]
        for k in group:
            out[k] = {"rank": rank, "label": f"={rank}" if len(group) > 1 else str(rank), "tied_with": best}
        remaining = [k for k in remaining if k not in group]
        rank += len(group)
    return out


def _verdict(diff: dict[str, Any]) -> str:
    if not diff["distinct"]:
        return "tie"
    return "better" if diff["mean"] > 0 else "worse"


# --- data: the pool, splits, labelled subsets -----------------------------------------------------------------
@dataclass
class _Pool:
    """The data (and the given test set) as one list of samples; per seed, train and test indices into it."""

    data: UserData
    spec: UserData  # data (+ test) in one spec
    n_data: int
    given_test: bool
    test_fraction: float

    def split(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        if self.given_test:
            return np.arange(self.n_data), np.arange(self.n_data, len(self.spec))
        return train_val_split(self.data, self.test_fraction, seed)

    def labels(self, idx: np.ndarray) -> np.ndarray | None:
        return None if self.spec.labels is None else self.spec.labels[idx]


def _open_pool(config: CompareConfig) -> _Pool:
    data = open_user_data(config.data, masks=config.masks, image_root=config.image_root)
    if config.test is None:
        _check_splittable(data, config.test_fraction)
        return _Pool(data, data, len(data), False, config.test_fraction)
    test = open_user_data(config.test, classes=data.classes if data.kind != "segmentation" else None,
                          image_root=config.image_root)
    if (test.kind, test.spatial_dims) != (data.kind, data.spatial_dims):
        raise CompareError(f"--test {config.test} is {test.spatial_dims}D {test.kind} data but --data is "
                           f"{data.spatial_dims}D {data.kind}; give a test set in the same layout")
    if data.kind == "classification":
        absent = [c for c, n in test.counts().items() if n == 0]
        if absent:
            raise CompareError(f"--test {config.test} has no sample of class(es) {absent}; the AUC needs every "
                               "class: add some, or drop --test to split one off --data")
    files = set(data.files)
    shared = [f for f in test.files if f in files]
    if shared:
        raise CompareError(f"--test {config.test} shares {len(shared)} file(s) with --data (e.g. {shared[0]}); "
                           "a test image must not be trained on")
    labels = None if data.labels is None else np.concatenate([data.labels, test.labels])
    masks = None if data.masks is None or test.masks is None else data.masks + test.masks
    spec = UserData(data.format, data.kind, data.spatial_dims, data.files + test.files, labels, data.classes,
                    data.source, masks)
    if len(data) < 2:
        raise CompareError(f"{config.data}: {len(data)} training sample(s); at least 2 are needed")
    return _Pool(data, spec, len(data), True, config.test_fraction)


def _check_splittable(data: UserData, test_fraction: float) -> None:
    """Too few samples for a train/test split: one message naming the fix."""
    if len(data) < 3:
        raise CompareError(f"{data.source}: {len(data)} sample(s); a train/test split needs at least 3 (add data, "
                           "or pass --test PATH)")
    if data.labels is None:
        return
    few = {c: n for c, n in data.counts().items() if n < 2}
    what = "label(s) with fewer than 2 positive samples" if data.kind == "multilabel" else \
        "class(es) with fewer than 2 samples"
    if few:
        raise CompareError(f"{data.source}: {what} ({', '.join(f'{c}: {n}' for c, n in few.items())}); each needs "
                           "one for training and one for the test set: add samples, or pass --test PATH")
    train, test = train_val_split(data, test_fraction, 0)
    if len(train) < 2 or len(test) < 1:
        raise CompareError(f"{data.source}: --test-fraction {test_fraction:g} leaves {len(train)} training and "
                           f"{len(test)} test samples; change it or add data")


def _labelled(pool: _Pool, train: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, str | None]:
    """Indices (into the pool) of the seed's labelled subset of ``train``, and a note when the fraction was
    raised to keep at least one example per class (per label for multi-label; one image for segmentation)."""
    n = len(train)
    y = pool.labels(train)
    if y is None:
        k = max(1, round(fraction * n))
        idx = np.sort(np.random.default_rng(seed).permutation(n)[:k])
        note = f"{fraction:g} of {n} images = {fraction * n:.2g}, raised to 1" if fraction * n < 0.5 else None
        return train[idx], note
    strata = y if y.ndim == 1 else y.argmax(1)
    idx = stratified_subset(strata, fraction=fraction, seed=seed)
    if y.ndim == 2:  # multi-label: every label needs a positive example
        rng = np.random.default_rng(seed + 7919)
        for k in range(y.shape[1]):
            if not y[idx, k].any() and y[:, k].any():
                idx = np.union1d(idx, rng.choice(np.flatnonzero(y[:, k]), 1))
    _, counts = np.unique(strata, return_counts=True)
    nominal = float(np.round(counts * fraction).sum())
    note = None
    if len(idx) > nominal:
        note = (f"{fraction:g} of {n} training samples = {fraction * n:.2g}, raised to {len(idx)} to keep at least one "
                f"example per {'label' if y.ndim == 2 else 'class'}")
    return train[idx], note


def _fingerprint(spec: UserData) -> str:
    """sha256 of the file list (paths, sizes), labels and masks: a changed data set is another comparison."""
    h = hashlib.sha256()
    for f in spec.files + (spec.masks or ()):
        h.update(f"{Path(f).resolve()}|{Path(f).stat().st_size}\n".encode())
    if spec.labels is not None:
        h.update(np.ascontiguousarray(spec.labels).tobytes())
    return h.hexdigest()


# --- running the cells -----------------------------------------------------------------------------------
@dataclass
class _Engine:
    config: CompareConfig
    pool: _Pool
    out: Path
    decoded: dict[Any, torch.Tensor] = dataclasses.field(default_factory=dict)
    features: dict[Any, tuple[np.ndarray, float]] = dataclasses.field(default_factory=dict)
    decode_s: float = 0.0

    # inputs ---------------------------------------------------------------------------------
    def _shape(self, arm: Arm) -> tuple[tuple[int, ...], tuple[float, ...] | None, tuple[float, float] | None]:
        cfg = arm.source.cfg
        hu = (cfg.intensity.hu_min, cfg.intensity.hu_max) if cfg.intensity.kind == "hu_window" else None
        return tuple(cfg.input_size[1:]), cfg.voxel_spacing, hu

    def images(self, arm: Arm) -> torch.Tensor:
        """Every pool sample decoded at the arm's input size: once per (size, spacing, window)."""
        size, spacing, hu = self._shape(arm)
        key = (size, spacing, hu) if self.pool.spec.spatial_dims == 3 else size[0]
        if key not in self.decoded:
            t0 = time.perf_counter()
            files = self.pool.spec.files
            self.decoded[key] = load_images(files, size[0]) if self.pool.spec.spatial_dims == 2 else \
                load_volumes(files, size, spacing, hu)
            self.decode_s += time.perf_counter() - t0
            _logger.info("decoded %d samples at %s in %.1f s", len(files), key, time.perf_counter() - t0)
        return self.decoded[key]

    def prep(self, arm: Arm) -> Preprocess:
        cfg = arm.source.cfg
        return Preprocess(resolve_data_config(cfg, input_size=tuple(cfg.input_size)))

    # the linear protocol ----------------------------------------------------------------------
    def feats(self, arm: Arm, seed: int) -> tuple[np.ndarray, float, int]:
        """Pooled features of every pool sample (pretrained: once; random init: once per seed), the
        extraction's wall time, and the parameters of the backbone."""
        key = (arm.key, None if arm.kind == "pretrained" else seed)
        if key not in self.features:
            images = self.images(arm)
            t0 = time.perf_counter()
            model = build_classifier(arm.source, arm.kind, num_classes=0, seed=seed)
            if model.spatial_dims == 2:
                model = model.to(memory_format=torch.channels_last)
            f = extract_features(model, images, self.prep(arm), batch_size=32)
            self.features[key] = (f, time.perf_counter() - t0, sum(p.numel() for p in model.parameters()))
        return self.features[key]

    def linear_cell(self, arm: Arm, sub: np.ndarray, test: np.ndarray, seed: int) -> dict[str, Any]:
        f, extract_s, params = self.feats(arm, seed)
        t0 = time.perf_counter()
        y_tr, y_te = self.pool.labels(sub), self.pool.labels(test)
        assert y_tr is not None and y_te is not None
        if y_tr.ndim == 1:
            prob = LogisticRegression(len(self.pool.spec.classes)).fit(f[sub], y_tr).predict_proba(f[test])
        else:
            cols = []
            for k in range(y_tr.shape[1]):
                if y_tr[:, k].min() == y_tr[:, k].max():  # one value in the labelled subset: its constant rate
                    cols.append(np.full(len(test), float(y_tr[0, k])))
                else:
                    cols.append(LogisticRegression(2).fit(f[sub], y_tr[:, k]).predict_proba(f[test])[:, 1])
            prob = np.stack(cols, 1)
        metrics = _class_scores(y_te, prob)
        return {**metrics, "extract_s": round(extract_s, 4), "fit_s": round(time.perf_counter() - t0, 4),
                "params": params, "input_size": list(arm.input_size)}

    # the finetune protocol ---------------------------------------------------------------------
    def finetune_cell(self, arm: Arm, sub: np.ndarray, test: np.ndarray, seed: int,
                      state: Path | None = None) -> dict[str, Any]:
        """One fine-tuning run; ``state``: its per-epoch state file (an interrupted cell continues from it, and
        it is removed once the cell is done)."""
        t0 = time.perf_counter()
        spec = self.pool.spec
        resume = state is not None and state.is_file()
        if resume:
            _logger.info("continuing the interrupted cell from %s", state)
        if spec.kind == "segmentation":
            cfg = self.config.finetune_config(arm.source.name, self.config.img_size, resume)
            train_spec, test_spec = spec.subset(sub), spec.subset(test)
            result = train_segmentation(arm.source, arm.kind, train_spec, train_spec, cfg, seed, state, test_spec)
            metrics = {"dice": float(result["test_metrics"]["dice"])}
            crop = result.get("cube") or (self.config.img_size or 128,) * 2
            size = [arm.source.cfg.in_chans, *crop]
        else:
            images, prep = self.images(arm), self.prep(arm)
            y_tr, y_te = self.pool.labels(sub), self.pool.labels(test)
            assert y_tr is not None and y_te is not None
            data = ClassificationData(spec.kind, spec.classes, images[sub], y_tr, images[sub], y_tr)
            cfg = self.config.finetune_config(arm.source.name, None, resume)
            result = train_classifier(arm.source, arm.kind, data, prep, cfg, seed, state, arm.source.cfg.modality)
            logits = torch.from_numpy(extract_features(result["model"], images[test], prep, batch_size=32))
            prob = torch.sigmoid(logits) if spec.kind == "multilabel" else torch.softmax(logits, 1)
            metrics = _class_scores(y_te, prob.numpy())
            size = list(arm.input_size)
        params = sum(p.numel() for p in result["model"].parameters())
        return {**metrics, "epochs": len(result["history"]), "best_epoch": result["best_epoch"],
                "train_s": round(time.perf_counter() - t0, 4), "params": params, "input_size": size}


def _class_scores(y: np.ndarray, prob: np.ndarray) -> dict[str, Any]:
    """AUC and accuracy (see the module docstring); multi-label adds the per-label AUCs."""
    if y.ndim == 1:
        return {"auc": macro_auc_ovr(y, prob), "acc": float((prob.argmax(1) == y).mean())}
    aucs = [roc_auc(y[:, k], prob[:, k]) if 0 < y[:, k].sum() < len(y) else None for k in range(y.shape[1])]
    valid = [a for a in aucs if a is not None]
    if not valid:
        raise CompareError("the test set holds no label both present and absent, so no AUC can be computed; "
                           "use a larger --test-fraction or a --test set with both cases per label")
    return {"auc": float(np.mean(valid)), "acc": float(((prob >= 0.5) == y.astype(bool)).mean()),
            "auc_per_label": aucs}


# --- the run directory ----------------------------------------------------------------------------------------
_EXTENSIBLE = ("seeds", "label_fractions")  # a cell is one (arm, fraction, seed): these only add or drop cells


def _cells_identity(identity: Any) -> Any:
    """``identity`` without the fields that only choose which cells to run (:data:`_EXTENSIBLE`)."""
    if not isinstance(identity, dict) or not isinstance(identity.get("config"), dict):
        return identity
    return {**identity, "config": {k: v for k, v in identity["config"].items() if k not in _EXTENSIBLE}}


def _prepare_out(out: Path, identity: dict[str, Any], command: str, overwrite: bool) -> None:
    """Claim ``out`` for this comparison: new or empty, holding this same comparison (resume), or holding it
    with other ``--seeds`` / ``--label-fractions`` (extend: the cells already computed are reused)."""
    run = out / RUN_NAME
    if out.exists() and not out.is_dir():
        raise CompareError(f"--out {out} is a file; choose a directory")
    if run.is_file():
        try:
            previous = json.loads(run.read_text())
        except (OSError, ValueError) as err:
            raise CompareError(f"{run} is unreadable ({err}); pass --overwrite to start again there") from err
        if previous.get("identity") == identity:
            _logger.info("continuing the comparison in %s", out)
            return
        if _cells_identity(previous.get("identity")) == _cells_identity(identity):
            # more (or fewer) seeds or label fractions: every cell already there is still valid, keep it
            _logger.info("extending the comparison in %s (was `%s`): its cells are kept", out, previous.get("command"))
            atomic_write_json(run, {"format": "zoo-compare-run/1", "command": command, "identity": identity},
                              fsync=False)
            return
        if not overwrite:
            raise CompareError(f"{out} holds another comparison (`{previous.get('command', '?')}`); repeat that command "
                               "to continue it, pass --overwrite to replace it, or choose another output directory")
        for name in _OURS:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    elif out.is_dir() and any(out.iterdir()):
        raise CompareError(f"{out} already holds files that are not a zoo comparison; choose another (or an empty) "
                           "output directory")
    atomic_write_json(run, {"format": "zoo-compare-run/1", "command": command, "identity": identity}, fsync=False)


def _cell_path(out: Path, arm: Arm, fraction: float, seed: int) -> Path:
    return out / CELLS / arm.file_id / f"f{fraction:g}-s{seed}.json"


def _versions() -> dict[str, str]:
    import sys

    out = {"zoo": __version__, "torch": torch.__version__, "numpy": np.__version__, "python": sys.version.split()[0],
           "platform": platform.platform()}
    from importlib.metadata import PackageNotFoundError, version

    for package in ("scikit-learn", "scipy"):  # the probe's and the tie test's (read without importing them)
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


def run_compare(config: CompareConfig, invocation: str | None = None,
                on_cell: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run (or continue) every cell of ``config``, write ``compare.json``, ``compare.md`` and ``compare.png``
    into :meth:`CompareConfig.output_dir`, and return the results dict.

    ``on_cell(record)`` is called after each newly computed cell has been saved (progress, tests).
    """
    start = time.perf_counter()
    config.validate()
    fractions = parse_fractions(config.label_fractions)
    pool = _open_pool(config)
    spec = pool.spec
    if spec.kind == "segmentation" and config.protocol == "linear":
        raise CompareError(f"{config.data} is segmentation data: the linear protocol (frozen features + logistic "
                           "regression) is for classification; pass --protocol finetune")
    if spec.kind != "segmentation" and config.img_size is not None:
        raise CompareError("--img-size sets the segmentation crop; classification uses each checkpoint's own input "
                           "size (its pretrained cfg): drop --img-size")
    if spec.kind == "segmentation" and spec.spatial_dims == 2 and (config.img_size or 128) % 32:
        raise CompareError(f"segmentation crops must be a multiple of 32 px (U-Net), got --img-size {config.img_size}")
    arms, skipped = select_arms(config.pattern, spec.spatial_dims, spec.kind, spec.num_classes, config.single,
                                config.protocol)
    for s in skipped:
        _logger.warning("skipped %s: %s", s["name"], s["reason"])
    if config.seeds < 2:
        _logger.warning("one seed gives no spread: no difference can be told apart, so every arm ties; "
                        "use --seeds 3 or more")
    out = config.output_dir()
    identity = {"config": {k: v for k, v in dataclasses.asdict(config).items() if k not in ("out", "overwrite")},
                "data": _fingerprint(spec), "arms": {a.key: a.source.sha256 for a in arms}}
    identity["config"]["label_fractions"] = list(fractions)
    identity = json.loads(json.dumps(identity))  # as it reads back from compare-run.json
    _prepare_out(out, identity, config.command(), config.overwrite)
    engine = _Engine(config, pool, out)
    primary = "dice" if spec.kind == "segmentation" else "auc"
    metrics = ("dice",) if spec.kind == "segmentation" else ("auc", "acc")
    cells: dict[tuple[str, float, int], dict[str, Any]] = {}
    splits, notes = [], {}
    for seed in range(config.seeds):
        train, test = pool.split(seed)
        splits.append({"seed": seed, "n_train": len(train), "n_test": len(test),
                       "train_counts": spec.subset(train).counts(), "test_counts": spec.subset(test).counts()})
        for fraction in fractions:
            sub, note = _labelled(pool, train, fraction, seed)
            if note:
                notes.setdefault(f"{fraction:g}", note)
            pairing = hashlib.sha256(sub.tobytes() + b"|" + test.tobytes()).hexdigest()[:16]
            for arm in arms:
                path = _cell_path(out, arm, fraction, seed)
                if path.is_file():
                    cells[(arm.key, fraction, seed)] = json.loads(path.read_text())
                    continue
                t0 = time.perf_counter()
                torch.manual_seed(seed)
                state = path.with_name(path.stem + STATE_SUFFIX)
                body = engine.linear_cell(arm, sub, test, seed) if config.protocol == "linear" else \
                    engine.finetune_cell(arm, sub, test, seed, state)
                record = {"arm": arm.key, "label": arm.label, "label_fraction": fraction, "seed": seed, "n_labelled": len(sub),
                          "n_test": len(test), "pairing": pairing, **body,
                          "cell_s": round(time.perf_counter() - t0, 4)}
                atomic_write_json(path, record, fsync=False)
                state.unlink(missing_ok=True)  # the cell is done: its fine-tuning state is not needed any more
                cells[(arm.key, fraction, seed)] = record
                _logger.info("%s, %g labels, seed %d: %s=%.4f", arm.label, fraction, seed, primary, record[primary])
                if on_cell is not None:
                    on_cell(record)
    results = _summarise(config, arms, skipped, fractions, cells, primary, metrics, notes)
    results.update({
        "format": FORMAT, "zoo_version": __version__, "command": config.command(), "invocation": invocation,
        "config": {**dataclasses.asdict(config), "label_fractions": list(fractions)},
        "data": {"path": str(pool.data.source), "format": spec.format, "kind": spec.kind,
                 "spatial_dims": spec.spatial_dims, "classes": list(spec.classes), "n": len(pool.data),
                 "counts": pool.data.counts(), "test": str(config.test) if config.test else None,
                 "n_test_given": len(spec) - pool.n_data if pool.given_test else None,
                 "split": "given --test" if pool.given_test else
                 f"stratified, seeded per seed, test fraction {config.test_fraction:g}",
                 "fingerprint_sha256": identity["data"]},
        "splits": splits,
        "machine": {**cpu_info(), "num_threads": torch.get_num_threads()},
        "versions": _versions(),
        "decode_s": round(engine.decode_s, 3),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(time.perf_counter() - start, 3),
    })
    atomic_write_json(out / JSON_NAME, results, fsync=False)
    atomic_write_text(out / MD_NAME, markdown_tables(results), fsync=False)
    try:
        plot_compare(results, out / PNG_NAME)
    except ImportError:
        _logger.warning("matplotlib is not installed, so %s was not drawn: pip install 'medzoo[plot]'", out / PNG_NAME)
    return results


def _summarise(config: CompareConfig, arms: list[Arm], skipped: list[dict[str, str]], fractions: tuple[float, ...],
               cells: dict[tuple[str, float, int], dict[str, Any]], primary: str, metrics: tuple[str, ...],
               notes: dict[str, str]) -> dict[str, Any]:
    seeds = list(range(config.seeds))
    by_key = {a.key: a for a in arms}
    tables = []
    for fraction in fractions:
        per = {a.key: [cells[(a.key, fraction, s)] for s in seeds] for a in arms}
        ranks = rank_arms({k: [c[primary] for c in v] for k, v in per.items()})
        rows = []
        for arm in arms:
            cs = per[arm.key]
            values = {m: [c[m] for c in cs] for m in metrics}
            if config.protocol == "linear" and "extract_s" in cs[0]:
                seed_s = [c["extract_s"] + c["fit_s"] for c in cs]
            else:
                seed_s = [c.get("train_s", c["cell_s"]) for c in cs]
            gain = None
            if arm.baseline is not None:
                diff = paired_difference(values[primary], [c[primary] for c in per[arm.baseline]])
                gain = {**diff, "metric": primary, "verdict": _verdict(diff), "baseline": by_key[arm.baseline].label}
            best = ranks[arm.key]["tied_with"]
            rows.append({
                "arm": arm.key, "label": arm.label, "kind": arm.kind, "rank": ranks[arm.key]["rank"],
                "rank_label": ranks[arm.key]["label"], "per_seed": values,
                "mean": {m: summarize(v)["mean"] for m, v in values.items()},
                "sd": {m: summarize(v)["std"] for m, v in values.items()},
                "gain": gain,
                "vs_group_best": None if best == arm.key else
                paired_difference(values[primary], [c[primary] for c in per[best]]) | {"best": by_key[best].label},
                "cost": {"wall_s_per_seed": summarize(seed_s)["mean"], "wall_s_per_seed_all": seed_s,
                         "params": cs[0]["params"], "input_size": cs[0]["input_size"]},
                "n_labelled": [c["n_labelled"] for c in cs], "pairing": [c["pairing"] for c in cs],
            })
        rows.sort(key=lambda r: (r["rank"], -r["mean"][primary], r["label"]))
        tables.append({"label_fraction": fraction, "note": notes.get(f"{fraction:g}"), "rows": rows})
    return {
        "protocol": config.protocol, "seeds": seeds, "metrics": list(metrics), "primary_metric": primary,
        "tie_rule": "tied when a two-sided paired t-test at 5% does not reject a zero mean of the per-seed "
                    "differences: |mean(d)| <= t(0.975, n-1) * sd(d) / sqrt(n); one seed: everything ties",
        "arms": [{"key": a.key, "label": a.label, "kind": a.kind, "name": a.source.name, "network": a.network,
                  "baseline": a.baseline, "sha256": a.source.sha256 if a.kind == "pretrained" else None,
                  "weights_path": str(a.source.weights_path) if a.kind == "pretrained" else None,
                  "weights_source": a.source.weights.source if a.kind == "pretrained" and a.source.weights else None,
                  "input_size": list(a.input_size),
                  "preprocessing": {"intensity": dataclasses.asdict(a.source.cfg.intensity),
                                    "voxel_spacing": a.source.cfg.voxel_spacing,
                                    "as": a.source.name}} for a in arms],
        "skipped": skipped,
        "results": tables,
    }


# --- outputs ---------------------------------------------------------------------------------------------------
def _pm(mean: float, sd: float, signed: bool = False) -> str:
    return f"{mean:+.3f} ± {sd:.3f}" if signed else f"{mean:.3f} ± {sd:.3f}"


def _params(n: int) -> str:
    return f"{n / 1e6:.1f} M"


def markdown_tables(results: dict[str, Any]) -> str:
    """The ranked tables of a results dict, one per label fraction (what ``compare.md`` holds)."""
    primary = results["primary_metric"]
    second = [m for m in results["metrics"] if m != primary]
    n = len(results["seeds"])
    lines = [f"`{results['command']}`", "",
             f"{results['data']['path']}: {results['data']['n']} samples "
             f"({', '.join(f'{k} {v}' for k, v in results['data']['counts'].items())}); {results['data']['split']}; "
             f"{results['protocol']} protocol; {n} seed(s); mean ± sd over seeds. Rank: `=k` marks arms "
             f"that cannot be told apart from the best of their group ({results['tie_rule']}). Gain: paired "
             "difference to the random init of the same architecture.", ""]
    for table in results["results"]:
        f = table["label_fraction"]
        n_lab = table["rows"][0]["n_labelled"]
        lines.append(f"**{f:g} of the training labels** ({min(n_lab)}-{max(n_lab)} labelled samples)"
                     if min(n_lab) != max(n_lab) else f"**{f:g} of the training labels** ({n_lab[0]} labelled samples)")
        if table["note"]:
            lines.append(f"(fraction raised: {table['note']})")
        lines.append("")
        head = ["rank", "start", primary.upper(), "gain over random init", *[m.upper() for m in second],
                "s / seed", "params", "input"]
        lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
        for r in table["rows"]:
            gain = "—" if r["gain"] is None else f"{_pm(r['gain']['mean'], r['gain']['sd'], True)} ({r['gain']['verdict']})"
            cells = [r["rank_label"], f"`{r['label']}`", _pm(r["mean"][primary], r["sd"][primary]), gain,
                     *[_pm(r["mean"][m], r["sd"][m]) for m in second], f"{r['cost']['wall_s_per_seed']:.2f}",
                     _params(r["cost"]["params"]), "x".join(str(s) for s in r["cost"]["input_size"])]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if results["skipped"]:
        lines.append("Skipped: " + "; ".join(f"`{s['name']}` ({s['reason']})" for s in results["skipped"]) + ".")
        lines.append("")
    m = results["machine"]
    lines.append(f"Machine: {m['cpu']}, {m['num_threads']} torch thread(s); wall time {results['wall_time_s']:.0f} s "
                 f"(this invocation); zoo {results['zoo_version']}, torch {results['versions']['torch']}.")
    return "\n".join(lines) + "\n"


def plot_compare(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Primary metric vs label fraction, one line per arm (mean, seed-sd error bars); random init dashed."""
    from .._plot import pyplot, save_figure

    plt = pyplot()
    primary = results["primary_metric"]
    fractions = [t["label_fraction"] for t in results["results"]]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, arm in enumerate(results["arms"]):
        rows = [next(r for r in t["rows"] if r["arm"] == arm["key"]) for t in results["results"]]
        xs = [f * (1 + 0.015 * (i - len(results["arms"]) / 2)) for f in fractions]  # dodge overlapping bars
        ax.errorbar(xs, [r["mean"][primary] for r in rows], yerr=[r["sd"][primary] for r in rows],
                    label=arm["label"], marker="o", capsize=3, linestyle="--" if arm["kind"] == "random_init" else "-",
                    color="0.4" if arm["kind"] == "random_init" else None)
    if len(fractions) > 1 and max(fractions) / min(fractions) >= 10:
        ax.set_xscale("log")
        ax.minorticks_off()
    ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
    ax.set_xlabel("label fraction (of the training part)")
    ax.set_ylabel(f"{primary.upper()} on the test images")
    ax.set_title(f"{Path(results['data']['path']).name}: {results['protocol']}, {len(results['seeds'])} seed(s)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return save_figure(fig, path, metadata={"Source": results["command"]})
