"""The pretrained config: everything zoo knows about one checkpoint (torch-free).

A :class:`PretrainedCfg` is to zoo what ``timm``'s pretrained cfg and torchvision's ``WeightsEnum``
entries are to them: where the bytes live and how to check them, how to build the architecture, what
the model expects as input, how the weights were made, under which licences, and what they achieve.
:func:`validate_cfg` is the schema; a test runs it over every registered entry.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Intensity",
    "PretrainedCfg",
    "validate_cfg",
    "SPATIAL_DIMS",
    "INTENSITY_KINDS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

SPATIAL_DIMS = (2, 3)
INTENSITY_KINDS = ("mean_std", "hu_window", "zscore", "unit")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REVISION = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Intensity:
    """How raw intensities become model input.

    kind:
        ``mean_std``: scale to [0, 1] then ``(x - mean) / std`` per channel (2D photos and X-rays);
        ``hu_window``: clip CT Hounsfield units to ``[hu_min, hu_max]`` and map linearly to [0, 1];
        ``zscore``: per-image zero mean, unit variance;
        ``unit``: scale to [0, 1] only.
    """

    kind: str = "mean_std"
    mean: tuple[float, ...] | None = IMAGENET_MEAN
    std: tuple[float, ...] | None = IMAGENET_STD
    hu_min: float | None = None
    hu_max: float | None = None

    @staticmethod
    def hu(hu_min: float = -1000.0, hu_max: float = 1000.0) -> Intensity:
        """A CT window mapped to [0, 1]."""
        return Intensity(kind="hu_window", mean=None, std=None, hu_min=hu_min, hu_max=hu_max)

    def describe(self) -> str:
        """One line for humans: what the preprocessing does to raw intensities."""
        if self.kind == "mean_std":
            return f"scale to [0, 1], then normalise: mean {self.mean}, std {self.std}"
        if self.kind == "hu_window":
            return f"CT window [{self.hu_min:g}, {self.hu_max:g}] HU -> [0, 1]"
        return {"zscore": "per-image z-score", "unit": "scale to [0, 1]"}[self.kind]


@dataclass(frozen=True)
class PretrainedCfg:
    """Metadata of one ``arch.tag`` checkpoint (or of an architecture without weights)."""

    # identity (filled in by the registry)
    architecture: str = ""
    tag: str = ""

    # where the bytes are
    file: str | None = None  # file name inside the repository's weights/ directory
    hf_hub_id: str | None = None  # "org/name"
    hf_hub_filename: str = "model.safetensors"
    hf_hub_revision: str | None = None  # a full commit hash
    url: str | None = None
    sha256: str | None = None
    file_size: int | None = None

    # how to build and load
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 0  # classes of the checkpoint's own head; 0 = no head (a backbone)
    classifier: str = "fc"  # module name of the classifier head
    first_conv: str = "conv1"  # module name of the first convolution (for in_chans adaptation)

    # input
    in_chans: int = 3
    spatial_dims: int = 2
    input_size: tuple[int, ...] = (3, 224, 224)  # (C, H, W) or (C, X, Y, Z)
    voxel_spacing: tuple[float, ...] | None = None  # mm, 3D only, in the order of input_size[1:]
    intensity: Intensity = field(default_factory=Intensity)
    interpolation: str = "bilinear"
    crop_pct: float = 1.0

    # provenance
    method: str = ""  # e.g. "pcrl", "simclr", "genesis"
    pretrain_data: str = ""
    modality: str = ""  # "cxr", "fundus", "ct"
    license_code: str = "Apache-2.0"
    license_weights: str = ""
    license_data: str = ""
    paper: str = ""
    origin: str = ""  # where the original file comes from, for converted official weights
    convert_from: str = ""  # the `zoo convert --from` layout name that produces this file
    command: str = ""  # the command that produced the weights
    verified: bool = False  # were these exact bytes hashed and loaded by zoo
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: str = ""

    @property
    def name(self) -> str:
        """``arch.tag`` (or just ``arch`` when untagged)."""
        return f"{self.architecture}.{self.tag}" if self.tag else self.architecture

    @property
    def has_weights(self) -> bool:
        """True when some source for the weights is registered."""
        return bool(self.file or self.hf_hub_id or self.url)

    @property
    def is_official(self) -> bool:
        """True for weights released by the upstream authors (converted, not trained here)."""
        return bool(self.convert_from)

    def replace(self, **changes: Any) -> PretrainedCfg:
        """A copy with some fields changed (an overlay)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        return dataclasses.asdict(self)

    # --- timm's view: timm reads ``model.pretrained_cfg`` as a dict (``.get(key)``, ``[key]``) ----------
    def timm_dict(self) -> dict[str, Any]:
        """This config as timm's ``pretrained_cfg`` dict (what ``timm.data.resolve_model_data_config`` reads).

        timm only knows ``(x / 255 - mean) / std``: a [0, 1] or CT-window intensity is mean 0, std 1.
        """
        it, c = self.intensity, self.in_chans
        if it.kind == "mean_std" and it.mean is not None and it.std is not None:
            mean, std = tuple(it.mean), tuple(it.std)
            if len(mean) != c:  # the model was created with another in_chans: one average value per channel
                mean, std = (sum(mean) / len(mean),) * c, (sum(std) / len(std),) * c
        else:
            mean, std = (0.0,) * c, (1.0,) * c
        return {
            "architecture": self.architecture, "tag": self.tag or None, "hf_hub_id": self.hf_hub_id,
            "input_size": tuple(self.input_size), "fixed_input_size": False, "interpolation": self.interpolation,
            "crop_pct": self.crop_pct, "crop_mode": "center", "mean": mean, "std": std,
            "num_classes": self.num_classes, "first_conv": self.first_conv, "classifier": self.classifier,
            "license": self.license_weights or None, "origin_url": self.origin or None,
            "paper_name": self.paper or None,
        }

    def get(self, key: str, default: Any = None) -> Any:
        """``timm_dict().get(key, default)``: lets timm's data helpers read a zoo model's config."""
        return self.timm_dict().get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.timm_dict()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.timm_dict()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainedCfg:
        """Inverse of :meth:`to_dict`; unknown keys raise."""
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown pretrained cfg fields: {unknown}")
        if isinstance(data.get("intensity"), dict):
            intensity = dict(data["intensity"])
            for key in ("mean", "std"):
                if intensity.get(key) is not None:
                    intensity[key] = tuple(intensity[key])
            data["intensity"] = Intensity(**intensity)
        for key in ("input_size", "voxel_spacing"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


def validate_cfg(cfg: PretrainedCfg) -> list[str]:
    """Schema check of one entry; returns a list of problems (empty when valid)."""
    problems: list[str] = []

    def need(cond: bool, msg: str) -> None:
        if not cond:
            problems.append(msg)

    need(bool(cfg.architecture), "architecture is empty")
    need(cfg.spatial_dims in SPATIAL_DIMS, f"spatial_dims must be 2 or 3, got {cfg.spatial_dims}")
    need(
        len(cfg.input_size) == cfg.spatial_dims + 1,
        f"input_size {cfg.input_size} must have {cfg.spatial_dims + 1} entries (C + spatial)",
    )
    need(cfg.input_size[0] == cfg.in_chans, f"input_size[0]={cfg.input_size[0]} != in_chans={cfg.in_chans}")
    need(all(isinstance(s, int) and s > 0 for s in cfg.input_size), "input_size must be positive ints")
    need(cfg.num_classes >= 0, "num_classes must be >= 0")
    need(bool(cfg.classifier) and bool(cfg.first_conv), "classifier and first_conv must name modules")
    if cfg.spatial_dims == 3:
        need(
            cfg.voxel_spacing is not None and len(cfg.voxel_spacing) == 3,
            "3D entries need voxel_spacing (3 values, mm)",
        )
    else:
        need(cfg.voxel_spacing is None, "voxel_spacing is for 3D entries only")

    it = cfg.intensity
    need(it.kind in INTENSITY_KINDS, f"intensity.kind must be one of {INTENSITY_KINDS}")
    if it.kind == "mean_std":
        need(
            it.mean is not None and it.std is not None and len(it.mean) == len(it.std) == cfg.in_chans,
            "mean_std intensity needs mean and std with one value per input channel",
        )
        need(it.std is None or all(s > 0 for s in it.std), "std must be > 0")
    if it.kind == "hu_window":
        need(
            it.hu_min is not None and it.hu_max is not None and it.hu_min < it.hu_max,
            "hu_window needs hu_min < hu_max",
        )

    if cfg.has_weights:
        need(bool(cfg.tag), "a weight entry needs a tag")
        need(bool(cfg.method), "method is empty")
        need(bool(cfg.pretrain_data), "pretrain_data is empty")
        need(bool(cfg.modality), "modality is empty")
        need(bool(cfg.license_weights), "license_weights is empty")
        need(bool(cfg.license_data), "license_data is empty")
        need(bool(cfg.paper), "paper is empty")
        if cfg.file is not None:
            need(cfg.file.endswith(".safetensors") and "/" not in cfg.file, "file must be a bare *.safetensors name")
        if cfg.hf_hub_id is not None:
            need(cfg.hf_hub_id.count("/") == 1, "hf_hub_id must be 'org/name'")
            need(
                cfg.hf_hub_revision is None or bool(_REVISION.match(cfg.hf_hub_revision)),
                "hf_hub_revision must be a full 40-hex commit hash",
            )
        if cfg.verified or not cfg.is_official:
            # our own weights, and verified official ones, always carry their full hash and size
            need(cfg.sha256 is not None and bool(_SHA256.match(cfg.sha256)), "sha256 must be 64 lowercase hex")
            need(cfg.file_size is not None and cfg.file_size > 0, "file_size must be > 0")
        if not cfg.is_official:
            need(bool(cfg.command), "weights trained by zoo must record the command that made them")
            need(bool(cfg.metrics), "weights trained by zoo must carry measured metrics")
        else:
            need(bool(cfg.origin), "official weights must say where the original file is (origin)")
    else:
        need(not cfg.verified, "an entry without weights cannot be verified")
        need(cfg.sha256 is None, "an entry without a weight source cannot carry a sha256")
    return problems
