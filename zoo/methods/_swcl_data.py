"""SWCL's data pipeline: a semi-supervised pseudo-labeller, then labelled fundus patches (cached on disk).

Stage 1, the **pseudo-labeller** (:func:`pseudo_labeller_stage`). Every photo under ``--data`` is
found by :func:`discover_fundus`: each sub-folder with ``images/`` (or ``training/images/``; a
``test/`` split is a downstream test set and is never read, e.g. DRIVE's test images) is a source;
its ``labels.csv`` gives image-level labels, reduced to normal (0) / abnormal (1): an integer grade
0 is normal and 1-4 abnormal (EyePACS DR grades), ``healthy`` / ``normal`` are normal and any other
string abnormal (HRF ``diabetic_retinopathy`` / ``glaucoma``). Photos without a label (DRIVE
training) are unlabelled. A fixed, seeded, stratified (source x patient label) and patient-disjoint
``holdout`` fraction of the labelled patients (both eyes of an EyePACS patient on the same side) is
held out from all training. The model is a ResNet-34 with reduced stride (output stride 16:
dilated ``layer4``) on ``labeller_size`` px crops, trained S4L-style: cross-entropy on the labelled
photos + rotation prediction (4-way, one random rotation per photo) on every training photo,
labelled or not + a batch-hard triplet loss (margin 0.5) on L2-normalised pooled features of the
labelled photos; SGD with Nesterov momentum 0.9, lr 0.03, weight decay 1e-3, cosine schedule. Its
held-out accuracy and ROC AUC are logged and stored in the stage's ``meta.json``; it is then applied
to every photo (``prob_abnormal``) and pseudo-labels the unlabelled ones (arg-max).

Stage 2, the **patches** (:func:`patch_stage`). Each photo is resized (shortest side) to ``S`` and
centre-cropped to ``S x S`` (the FOV mask likewise: the ``mask/`` file when there is one, else
:func:`~zoo.data.datasets.fov_mask`); a right eye (:func:`~zoo.data.patients.eye_side`) is flipped
horizontally, which is the same as flipping each patch and swapping tl<->tr and bl<->br. Five
``S/2`` patches are cut, in the order of :data:`POSITIONS`: ``tl`` = rows/cols ``[0, S/2)``, ``tr`` =
rows ``[0, S/2)`` cols ``[S/2, S)``, ``bl``, ``br`` and the centre ``c`` = ``[S/4, 3S/4)`` both ways.
Each patch's **abnormality score** is the pseudo-labeller's softmax class activation map of the
abnormal class (the per-location softmax of the classifier applied to the last feature map, computed
on the ``labeller_size`` crop, mirrored for right eyes and upsampled bilinearly to ``S``) averaged
over the FOV pixels inside the patch (0 if it holds none). As in the paper the score is 0 for every
patch of a photo whose image-level label is normal, where that label is the ground truth for a
labelled photo and the pseudo-label for an unlabelled one.

**Labels** (:func:`patch_labels`, scheme ``"all"``). A *sample* is one patient and one position p:
the patch at p of the patient's left eye and the patch at p of the right eye (a patient with a single
photo pairs the patch with itself); the method makes 2 views of each, so a sample is 2 patches x 2
views. Each patch carries up to three integer labels (``-1`` = none), unique across the whole set:

1. *instance*: its own id (image, p), so the two views of one patch are positives;
2. *pair*: an id of (patient, p) shared by the left and right patches only if both scores are on the
   same side of ``threshold`` (0.4): both ``>= 0.4`` or both ``< 0.4``; otherwise neither gets it;
3. *position-abnormality*: an id of (p, score ``>= threshold``) shared by every patch at position p
   with the same abnormality bin, the position-specific abnormal/normal label across patients.

Scheme ``"pair"`` keeps labels 1 and 2, ``"instance"`` label 1 only (then SupCon is SimCLR's
NT-Xent). This is our reading of the paper's "all" scheme, where the left/right agreement rule is
the one stated upstream; the third label is how we make the patch labels position-specific.

Both stages are cached under ``$ZOO_CACHE_DIR/swcl/<stage>-<hash>/`` (default ``~/.cache/zoo``),
keyed by a sha256 over the (relative name, size, sha256) of every photo, mask and labels file used,
the stage's hyper-parameters and the zoo version (stage 2 also includes stage 1's key). Files are
written atomically and ``meta.json`` last, so an interrupted run is recomputed, never half-read.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from sklearn.metrics import accuracy_score, roc_auc_score
from torch import nn
from torch.utils.data import Dataset

from .. import __version__
from .._io import atomic_write, atomic_write_json, sha256_file
from ..data.augment import Augment2D, Augment2DConfig, normalize, random_rot90
from ..data.datasets import IMAGE_EXTENSIONS, DatasetError, fov_mask_files, read_fov_mask
from ..data.patients import eye_side, patient_id
from ..data.sampling import stratified_subset
from ..hub import cache_dir
from ..models.resnet import ResNet

__all__ = [
    "POSITIONS",
    "SCHEMES",
    "SWCLDataConfig",
    "FundusRecord",
    "discover_fundus",
    "holdout_split",
    "PseudoLabeller",
    "patch_boxes",
    "cut_patches",
    "patch_scores",
    "patient_pairs",
    "patch_labels",
    "SWCLPatchDataset",
    "pseudo_labeller_stage",
    "patch_stage",
    "build_patch_dataset",
]

_logger = logging.getLogger(__name__)

POSITIONS = ("tl", "tr", "bl", "br", "c")
SCHEMES = ("all", "pair", "instance")
_NORMAL_NAMES = {"healthy", "normal"}
# SWCL's fundus normalisation (the swcl_resnet18 / swcl_resnetv2_50x1 registry entries use the same values)
_MEAN, _STD = (0.1633, 0.2259, 0.3219), (0.1756, 0.2195, 0.3038)
_LABELLER_AUG = Augment2DConfig(scale=(0.8, 1.0), jitter=(0.2, 0.2, 0.0, 0.0), gray_p=0.0, blur_p=0.0)


@dataclass(frozen=True)
class SWCLDataConfig:
    """Hyper-parameters of the two cached stages (``--hparam key=value`` of ``zoo pretrain --method swcl``).

    ``image_size`` is ``S`` (patches are ``S/2``); ``None`` means twice the run's ``--img-size``, so the
    patches are the network's input size (upstream: S = 448, 224-px patches). The pseudo-labeller
    defaults are scaled for 2 CPU cores: 96-px input, 20 epochs of the ~140 labelled training photos
    (9 steps of 16 per epoch); upstream uses the full-size photos of a far larger set.
    """

    image_size: int | None = None
    labeller_size: int = 96
    labeller_depth: int = 34
    labeller_epochs: int = 20
    labeller_batch: int = 16
    labeller_lr: float = 0.03
    labeller_seed: int = 0
    rotation_weight: float = 1.0
    triplet_weight: float = 1.0
    triplet_margin: float = 0.5
    holdout: float = 0.2
    threshold: float = 0.4
    label_scheme: str = "all"

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_hparams(cls, hparams: dict[str, Any], img_size: int) -> SWCLDataConfig:
        """The data settings among a run's hyper-parameters (other keys are the method's)."""
        cfg = cls(**{k: v for k, v in hparams.items() if k in cls.keys()})
        if cfg.image_size is None:
            cfg = SWCLDataConfig(**{**asdict(cfg), "image_size": 2 * img_size})
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.image_size is None or self.image_size < 8 or self.image_size % 2:
            raise ValueError(f"SWCL image_size (S) must be an even number >= 8, got {self.image_size}")
        if self.labeller_size < 32:
            raise ValueError(f"labeller_size must be >= 32 px, got {self.labeller_size}")
        if self.labeller_depth not in (18, 34, 50):
            raise ValueError(f"labeller_depth must be 18, 34 or 50, got {self.labeller_depth}")
        if self.labeller_epochs < 1 or self.labeller_batch < 2:
            raise ValueError("labeller_epochs must be >= 1 and labeller_batch >= 2")
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"holdout must be in (0, 1), got {self.holdout}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.label_scheme not in SCHEMES:
            raise ValueError(f"label_scheme must be one of {SCHEMES}, got {self.label_scheme!r}")

    def labeller_part(self) -> dict[str, Any]:
        """The settings stage 1 depends on (its cache key)."""
        return {k: v for k, v in asdict(self).items()
                if k.startswith(("labeller_", "rotation_", "triplet_")) or k == "holdout"}


# --- discovery -----------------------------------------------------------------------------------
@dataclass
class FundusRecord:
    """One photo: its file, source folder, binary label (-1 unlabelled), patient and eye."""

    path: Path
    source: str
    label: int
    patient: str
    eye: str | None
    mask_files: dict[str, Path] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return f"{self.source}/{self.path.stem}"


def _binary_label(value: str) -> int:
    v = value.strip()
    if v.lstrip("-").isdigit():
        return 0 if int(v) == 0 else 1
    return 0 if v.lower() in _NORMAL_NAMES else 1


def _read_labels(csv_path: Path) -> dict[str, int]:
    if not csv_path.is_file():
        return {}
    with csv_path.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if len(r) >= 2]
    return {r[0]: _binary_label(r[1]) for r in rows[1:]}  # first row: header


def discover_fundus(root: str | Path) -> list[FundusRecord]:
    """Every usable photo under ``root`` (see the module docstring), sorted by source then name."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a directory; give --data the fundus folder (e.g. .../data/fundus).")
    sources: list[tuple[str, Path, Path]] = []  # (name, folder with images/, labels.csv)
    if (root / "images").is_dir():
        sources.append((root.name, root, root / "labels.csv"))
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if (d / "images").is_dir():
            sources.append((d.name, d, d / "labels.csv"))
        elif (d / "training" / "images").is_dir():
            if (d / "test").is_dir():
                _logger.info("swcl: %s/test is a downstream test set and is not used", d.name)
            sources.append((d.name, d / "training", d / "labels.csv"))
    records: list[FundusRecord] = []
    for name, folder, labels_csv in sources:
        labels = _read_labels(labels_csv if labels_csv.is_file() else folder / "labels.csv")
        masks = fov_mask_files(folder)
        for p in sorted(folder.joinpath("images").iterdir()):
            if p.suffix.lower() not in IMAGE_EXTENSIONS or not p.is_file():
                continue
            pid = patient_id(p)
            records.append(FundusRecord(path=p, source=name, label=labels.get(p.stem, -1),
                                        patient=f"{name}/{pid if pid is not None else p.stem}",
                                        eye=eye_side(p), mask_files=masks))
    labelled = {r.label for r in records if r.label >= 0}
    if labelled != {0, 1}:
        raise DatasetError(
            f"{root}: SWCL needs fundus photos labelled normal and abnormal (a sub-folder with images/ and a "
            f"labels.csv of image,label rows: DR grade 0-4 or healthy/<disease>); found {len(records)} photos, "
            f"labelled classes {sorted(labelled)}."
        )
    return records


def holdout_split(records: Sequence[FundusRecord], fraction: float, seed: int) -> np.ndarray:
    """Bool mask of the held-out photos: a seeded ``fraction`` of the labelled patients, stratified by
    (source, patient label = abnormal if any eye is), so both eyes of a patient fall on one side."""
    patients: dict[str, int] = {}
    strata: dict[str, str] = {}
    for r in records:
        if r.label < 0:
            continue
        patients[r.patient] = max(patients.get(r.patient, 0), r.label)
        strata[r.patient] = r.source
    names = sorted(patients)
    keys = [f"{strata[p]}:{patients[p]}" for p in names]
    codes = np.unique(keys, return_inverse=True)[1]
    held = {names[i] for i in stratified_subset(codes, fraction=fraction, seed=seed)}
    return np.array([r.label >= 0 and r.patient in held for r in records])


# --- images ----------------------------------------------------------------------------------------
def _square(path: Path, mask_files: dict[str, Path], sizes: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The photo (and its FOV mask) resized so its shortest side is ``s`` and centre-cropped to ``s x s``,
    for each ``s`` in ``sizes``: ``[(rgb (s, s, 3) uint8, mask (s, s) bool), ...]``."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        rgb = np.asarray(img)
    mask = Image.fromarray(read_fov_mask(path, rgb, mask_files).astype(np.uint8) * 255)
    out = []
    for s in sizes:
        w, h = img.size
        scale = s / min(w, h)
        nw, nh = max(s, round(w * scale)), max(s, round(h * scale))
        left, top = (nw - s) // 2, (nh - s) // 2
        box = (left, top, left + s, top + s)
        im = np.asarray(img.resize((nw, nh), Image.BILINEAR).crop(box))
        m = np.asarray(mask.resize((nw, nh), Image.NEAREST).crop(box)) > 127
        out.append((im, m))
    return out


def _load_all(records: Sequence[FundusRecord], sizes: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """For each size: images ``(N, 3, s, s)`` uint8 and masks ``(N, s, s)`` bool (threads decode)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        decoded = list(pool.map(lambda r: _square(r.path, r.mask_files, sizes), records))
    out = []
    for k in range(len(sizes)):
        imgs = torch.from_numpy(np.stack([d[k][0] for d in decoded])).permute(0, 3, 1, 2).contiguous()
        masks = torch.from_numpy(np.stack([d[k][1] for d in decoded]))
        out.append((imgs, masks))
    return out


def _fingerprint(records: Sequence[FundusRecord], root: Path) -> list[tuple[str, int, str]]:
    """(relative name, size, sha256) of every photo, mask and labels file the pipeline reads."""
    files: set[Path] = set()
    for r in records:
        files.add(r.path)
        m = r.mask_files.get(r.path.stem) or r.mask_files.get(f"{r.path.stem}_mask")
        if m is not None:
            files.add(m)
        for csv_path in (r.path.parent.parent / "labels.csv", r.path.parent.parent.parent / "labels.csv"):
            if csv_path.is_file() and root in csv_path.parents:
                files.add(csv_path)
    return [(str(p.relative_to(root)), p.stat().st_size, sha256_file(p)) for p in sorted(files)]


def _key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({**payload, "zoo": __version__}, sort_keys=True).encode()).hexdigest()[:16]


# --- the pseudo-labeller ---------------------------------------------------------------------------
class PseudoLabeller(nn.Module):
    """ResNet trunk with reduced stride (output stride 16) + normal/abnormal and rotation heads."""

    def __init__(self, depth: int = 34) -> None:
        super().__init__()
        self.trunk = ResNet(depth=depth, num_classes=0, global_pool="", output_stride=16)
        feat = self.trunk.num_features
        self.classifier = nn.Linear(feat, 2)
        self.rotation = nn.Linear(feat, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(class logits, rotation logits, L2-normalised pooled features)``."""
        pooled = self.trunk.forward_features(x).mean(dim=(2, 3))
        return self.classifier(pooled), self.rotation(pooled), F.normalize(pooled, dim=1)

    @torch.no_grad()
    def cam(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax class activation map of the abnormal class, ``(B, h, w)`` in [0, 1]."""
        fmap = self.trunk.forward_features(x)
        logits = torch.einsum("bchw,kc->bkhw", fmap, self.classifier.weight) + self.classifier.bias.view(1, -1, 1, 1)
        return logits.softmax(dim=1)[:, 1]


def _batch_hard_triplet(emb: torch.Tensor, y: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-hard triplet loss: each anchor's farthest positive vs its nearest negative (0 if none)."""
    d = torch.cdist(emb, emb)
    same = y[:, None] == y[None, :]
    eye = torch.eye(len(y), dtype=torch.bool, device=emb.device)
    valid = (same & ~eye).any(1) & (~same).any(1)
    if not valid.any():
        return emb.sum() * 0.0
    hardest_pos = d.masked_fill(~same | eye, float("-inf")).amax(1)
    hardest_neg = d.masked_fill(same, float("inf")).amin(1)
    return F.relu(hardest_pos - hardest_neg + margin)[valid].mean()


def _prep(x: torch.Tensor) -> torch.Tensor:
    return normalize(x.float().div(255.0), _MEAN, _STD)


def train_pseudo_labeller(
    images: torch.Tensor, labels: torch.Tensor, train_mask: torch.Tensor, cfg: SWCLDataConfig
) -> tuple[PseudoLabeller, list[float]]:
    """S4L training on ``images`` (``(N, 3, L, L)`` uint8); ``labels`` -1 = unlabelled; only ``train_mask``
    photos are used. Returns the model (eval mode) and the mean loss of each epoch."""
    torch.manual_seed(cfg.labeller_seed)
    model = PseudoLabeller(cfg.labeller_depth)
    gen = torch.Generator().manual_seed(cfg.labeller_seed)
    lab_idx = torch.nonzero(train_mask & (labels >= 0)).flatten()
    all_idx = torch.nonzero(train_mask).flatten()
    bs = cfg.labeller_batch
    steps_per_epoch = max(1, math.ceil(len(lab_idx) / bs))
    total = cfg.labeller_epochs * steps_per_epoch
    opt = torch.optim.SGD(model.parameters(), lr=cfg.labeller_lr, momentum=0.9, nesterov=True, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    aug = Augment2D(_LABELLER_AUG.scaled(images.shape[-1]))
    model.train()
    epoch_losses: list[float] = []
    for epoch in range(cfg.labeller_epochs):
        perm_l = lab_idx[torch.randperm(len(lab_idx), generator=gen)]
        perm_a = all_idx[torch.randperm(len(all_idx), generator=gen)]
        losses = []
        for s in range(steps_per_epoch):
            li = perm_l[s * bs:(s + 1) * bs]
            ai = perm_a[(s * bs) % len(perm_a):][:bs]
            if len(li) < 2:
                continue
            x_l = aug(images[li].float().div(255.0), gen)
            x_r, k = random_rot90(aug(images[ai].float().div(255.0), gen), gen)
            x = normalize(torch.cat([x_l, x_r]), _MEAN, _STD)
            logits, rot, emb = model(x)
            n = len(li)
            loss = (F.cross_entropy(logits[:n], labels[li])
                    + cfg.rotation_weight * F.cross_entropy(rot[n:], k)
                    + cfg.triplet_weight * _batch_hard_triplet(emb[:n], labels[li], cfg.triplet_margin))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        epoch_losses.append(float(np.mean(losses)) if losses else float("nan"))
        _logger.info("swcl: pseudo-labeller epoch %d/%d, loss %.4f", epoch + 1, cfg.labeller_epochs, epoch_losses[-1])
    return model.eval(), epoch_losses


@torch.no_grad()
def _predict(model: PseudoLabeller, images: torch.Tensor, batch: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(P(abnormal) (N,), softmax CAM of the abnormal class (N, h, w))``."""
    probs, cams = [], []
    for chunk in images.split(batch):
        x = _prep(chunk)
        probs.append(model(x)[0].softmax(dim=1)[:, 1])
        cams.append(model.cam(x))
    return torch.cat(probs), torch.cat(cams)


# --- patches and labels ------------------------------------------------------------------------------
def patch_boxes(size: int) -> list[tuple[int, int]]:
    """Top-left corners ``(row, col)`` of the five ``size/2`` patches of a ``size x size`` crop, in
    :data:`POSITIONS` order."""
    h, q = size // 2, size // 4
    return [(0, 0), (0, h), (h, 0), (h, h), (q, q)]


def cut_patches(image: torch.Tensor, right_eye: bool) -> torch.Tensor:
    """The five patches ``(5, C, S/2, S/2)`` of an ``(C, S, S)`` crop; a right eye is mirrored first."""
    if right_eye:
        image = image.flip(-1)
    size = image.shape[-1]
    h = size // 2
    return torch.stack([image[..., r:r + h, c:c + h] for r, c in patch_boxes(size)])


def patch_scores(cam: torch.Tensor, mask: torch.Tensor, image_normal: bool) -> torch.Tensor:
    """Abnormality score of each patch ``(5,)``: the mean of ``cam`` (``(S, S)``, already at the crop's
    resolution and orientation) over the FOV pixels of ``mask`` inside it; zeros for a normal image."""
    if image_normal:
        return torch.zeros(len(POSITIONS))
    cam_p = cut_patches(cam[None], right_eye=False)[:, 0]
    m = cut_patches(mask[None].float(), right_eye=False)[:, 0]
    area = m.sum(dim=(1, 2))
    return torch.where(area > 0, (cam_p * m).sum(dim=(1, 2)) / area.clamp(min=1), torch.zeros_like(area))


def patient_pairs(records: Sequence[FundusRecord]) -> list[tuple[int, int]]:
    """``(left, right)`` photo indices per patient; photos without a fellow eye are paired with themselves."""
    by_patient: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_patient.setdefault(r.patient, []).append(i)
    pairs = []
    for idx in by_patient.values():
        lefts = [i for i in idx if records[i].eye == "left"]
        rights = [i for i in idx if records[i].eye == "right"]
        while lefts and rights:
            pairs.append((lefts.pop(0), rights.pop(0)))
        pairs.extend((i, i) for i in lefts + rights + [i for i in idx if records[i].eye is None])
    return sorted(pairs)


def patch_labels(
    scores: torch.Tensor, pairs: Sequence[tuple[int, int]], threshold: float = 0.4, scheme: str = "all"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples and labels of the patch set (see the module docstring).

    ``scores``: ``(N, 5)`` abnormality of each photo's patches; ``pairs``: ``(left, right)`` photos of
    each patient. Returns ``samples`` ``(M, 3)`` = (left photo, right photo, position) with
    ``M = len(pairs) * 5`` and ``labels`` ``(M, 2, 3)`` = (instance, pair, position-abnormality) ids of
    the two patches, ``-1`` where a patch has no such label; ids are unique across label kinds.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"label_scheme must be one of {SCHEMES}, got {scheme!r}")
    n_img, n_pos = scores.shape
    samples, labels = [], []
    n_inst, n_pair = n_img * n_pos, len(pairs) * n_pos
    for k, (a, b) in enumerate(pairs):
        for p in range(n_pos):
            samples.append((a, b, p))
            abn_a, abn_b = bool(scores[a, p] >= threshold), bool(scores[b, p] >= threshold)
            pair = n_inst + k * n_pos + p if scheme != "instance" and abn_a == abn_b else -1
            rows = []
            for img, abn in ((a, abn_a), (b, abn_b)):
                pos_abn = n_inst + n_pair + 2 * p + int(abn) if scheme == "all" else -1
                rows.append((img * n_pos + p, pair, pos_abn))
            labels.append(rows)
    return torch.tensor(samples, dtype=torch.long), torch.tensor(labels, dtype=torch.long)


class SWCLPatchDataset(Dataset):
    """Samples of 2 patches (left and right eye of a patient at one position) with their labels.

    Items: ``{"patches": (2, 3, P, P) float in [0, 1], "labels": (2, 3) long}``.
    """

    def __init__(self, patches: torch.Tensor, samples: torch.Tensor, labels: torch.Tensor, info: str = "") -> None:
        self.patches, self.samples, self.labels, self.info = patches, samples, labels, info

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        a, b, p = self.samples[index].tolist()
        pair = torch.stack([self.patches[a, p], self.patches[b, p]]).float().div_(255.0)
        return {"patches": pair, "labels": self.labels[index]}

    def describe(self) -> str:
        p = self.patches.shape[-1]
        return f"SWCL patches {self.info} ({len(self)} samples of 2 patches at {p} px)"


# --- cached stages ---------------------------------------------------------------------------------
def _stage_dir(name: str, key: str) -> Path:
    return cache_dir() / "swcl" / f"{name}-{key}"


def _read_meta(folder: Path) -> dict[str, Any] | None:
    meta = folder / "meta.json"
    return json.loads(meta.read_text()) if meta.is_file() else None


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    atomic_write(path, lambda p: save_file({k: v.contiguous() for k, v in tensors.items()}, str(p)))


def pseudo_labeller_stage(
    records: Sequence[FundusRecord], root: Path, cfg: SWCLDataConfig, fingerprint: list[tuple[str, int, str]]
) -> tuple[Path, dict[str, Any], bool]:
    """Train (or load from the cache) the pseudo-labeller; returns its folder, ``meta.json`` content and
    whether it came from the cache."""
    key = _key({"stage": "labeller", "files": fingerprint, "hparams": cfg.labeller_part()})
    folder = _stage_dir("labeller", key)
    meta = _read_meta(folder)
    if meta is not None:
        _logger.info("swcl: pseudo-labeller cache hit %s (held-out accuracy %.3f, AUC %.3f)", folder,
                     meta["heldout"]["acc"], meta["heldout"]["auc"])
        return folder, meta, True
    t0, c0 = time.perf_counter(), time.process_time()
    _logger.info("swcl: training the pseudo-labeller on %d photos at %d px (cache miss %s)", len(records),
                 cfg.labeller_size, folder)
    ((images, _),) = _load_all(records, [cfg.labeller_size])
    labels = torch.tensor([r.label for r in records], dtype=torch.long)
    held = torch.from_numpy(holdout_split(records, cfg.holdout, cfg.labeller_seed))
    model, epoch_losses = train_pseudo_labeller(images, labels, ~held, cfg)
    prob, _ = _predict(model, images)
    y_held = labels[held].numpy()
    p_held = prob[held].numpy()
    metrics = {"acc": float(accuracy_score(y_held, p_held >= 0.5)),
               "auc": float(roc_auc_score(y_held, p_held)) if len(np.unique(y_held)) > 1 else float("nan")}
    n_patients = len({r.patient for r, h in zip(records, held.tolist(), strict=True) if h})
    _logger.info("swcl: pseudo-labeller held-out accuracy %.3f, AUC %.3f (%d photos of %d patients)",
                 metrics["acc"], metrics["auc"], int(held.sum()), n_patients)
    folder.mkdir(parents=True, exist_ok=True)
    _save_tensors(folder / "labeller.safetensors", model.state_dict())
    meta = {
        "key": key, "hparams": cfg.labeller_part(), "zoo_version": __version__,
        "heldout": {"acc": metrics["acc"], "auc": metrics["auc"], "n_images": int(held.sum()),
                    "n_patients": n_patients},
        "epoch_losses": epoch_losses, "names": [r.name for r in records], "labels": labels.tolist(),
        "heldout_mask": held.tolist(), "prob_abnormal": [round(float(p), 6) for p in prob],
        "pseudo_labels": [r.label if r.label >= 0 else int(p >= 0.5) for r, p in zip(records, prob, strict=True)],
        "wall_time_s": round(time.perf_counter() - t0, 2),
        "cpu_time_s": round(time.process_time() - c0, 2), "threads": torch.get_num_threads(),
    }
    atomic_write_json(folder / "meta.json", meta)
    return folder, meta, False


def patch_stage(
    records: Sequence[FundusRecord], cfg: SWCLDataConfig, labeller_dir: Path, labeller_meta: dict[str, Any]
) -> tuple[Path, dict[str, Any], bool]:
    """Cut and score the patches of every photo (or load them from the cache); as :func:`pseudo_labeller_stage`."""
    assert cfg.image_size is not None
    key = _key({"stage": "patches", "labeller": labeller_meta["key"], "image_size": cfg.image_size})
    folder = _stage_dir("patches", key)
    meta = _read_meta(folder)
    if meta is not None:
        _logger.info("swcl: patch set cache hit %s", folder)
        return folder, meta, True
    t0, c0 = time.perf_counter(), time.process_time()
    _logger.info("swcl: cutting and scoring %d x 5 patches at S=%d (cache miss %s)", len(records), cfg.image_size,
                 folder)
    model = PseudoLabeller(cfg.labeller_depth)
    model.load_state_dict(load_file(str(labeller_dir / "labeller.safetensors")))
    model.eval()
    (small, _), (big, masks) = _load_all(records, [cfg.labeller_size, cfg.image_size])
    _, cams = _predict(model, small)
    cams = F.interpolate(cams[:, None], size=(cfg.image_size, cfg.image_size), mode="bilinear",
                         align_corners=False)[:, 0]
    patches, scores = [], []
    for i, r in enumerate(records):
        right = r.eye == "right"
        patches.append(cut_patches(big[i], right))
        cam, mask = (cams[i].flip(-1), masks[i].flip(-1)) if right else (cams[i], masks[i])
        scores.append(patch_scores(cam, mask, image_normal=labeller_meta["pseudo_labels"][i] == 0))
    folder.mkdir(parents=True, exist_ok=True)
    score_t = torch.stack(scores)
    _save_tensors(folder / "patches.safetensors", {"patches": torch.stack(patches), "scores": score_t})
    meta = {
        "key": key, "labeller_key": labeller_meta["key"], "image_size": cfg.image_size, "zoo_version": __version__,
        "names": [r.name for r in records], "patients": [r.patient for r in records],
        "eyes": [r.eye for r in records], "image_labels": labeller_meta["pseudo_labels"],
        "labeller_heldout": labeller_meta["heldout"], "positions": list(POSITIONS),
        "mean_score": round(float(score_t.mean()), 6), "wall_time_s": round(time.perf_counter() - t0, 2),
        "cpu_time_s": round(time.process_time() - c0, 2), "threads": torch.get_num_threads(),
    }
    atomic_write_json(folder / "meta.json", meta)
    return folder, meta, False


def _build(root: Path, cfg: SWCLDataConfig) -> SWCLPatchDataset:
    records = discover_fundus(root)
    fingerprint = _fingerprint(records, root)
    lab_dir, lab_meta, lab_hit = pseudo_labeller_stage(records, root, cfg, fingerprint)
    patch_dir, _, patch_hit = patch_stage(records, cfg, lab_dir, lab_meta)
    tensors = load_file(str(patch_dir / "patches.safetensors"))
    samples, labels = patch_labels(tensors["scores"], patient_pairs(records), cfg.threshold, cfg.label_scheme)
    info = (f"of {root} ({len(records)} photos, S={cfg.image_size}, scheme {cfg.label_scheme}, "
            f"pseudo-labeller held-out acc {lab_meta['heldout']['acc']:.3f} / AUC {lab_meta['heldout']['auc']:.3f}; "
            f"stages {'cached' if lab_hit else 'trained'} / {'cached' if patch_hit else 'built'})")
    ds = SWCLPatchDataset(tensors["patches"], samples, labels, info)
    ds.stage_dirs = {"labeller": lab_dir, "patches": patch_dir}  # type: ignore[attr-defined]
    ds.labeller_meta = lab_meta  # type: ignore[attr-defined]
    ds.cache_hits = {"labeller": lab_hit, "patches": patch_hit}  # type: ignore[attr-defined]
    return ds


def build_patch_dataset(root: str | Path, cfg: SWCLDataConfig) -> SWCLPatchDataset:
    """Both stages (cached) and the labelled patch set. Under DDP rank 0 builds, the others read the cache."""
    root = Path(root).resolve()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        if dist.get_rank() == 0:
            ds = _build(root, cfg)
        dist.barrier()
        if dist.get_rank() != 0:
            ds = _build(root, cfg)
        return ds
    return _build(root, cfg)
