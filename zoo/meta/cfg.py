"""The pretrained config: everything zoo knows about one checkpoint (torch-free).

A :class:`PretrainedCfg` is to zoo what ``timm``'s pretrained cfg and torchvision's ``WeightsEnum``
entries are to them: where the bytes live and how to check them, how to build the architecture, what
the model expects as input, how the weights were made, under which licences, and what they achieve.
:func:`validate_cfg` is the schema; a test runs it over every registered entry.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Intensity",
    "PretrainedCfg",
    "validate_cfg",
    "PretrainedCfgError",
    "cfg_from_config_dict",
    "MAX_CONFIG_DEPTH",
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
    image_scale: float = 1.0  # 2D segmentation: whole images resized by this factor first (zoo finetune --scale)

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

    # a fine-tuned head (``zoo finetune``): output names in order, and how outputs become decisions
    label_names: tuple[str, ...] = ()
    decision: dict[str, Any] = field(default_factory=dict)  # e.g. {"activation": "softmax", "threshold": 0.4}

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
        for key in ("input_size", "voxel_spacing", "label_names"):
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
    need(not cfg.label_names or len(cfg.label_names) == cfg.num_classes,
         f"label_names has {len(cfg.label_names)} names but num_classes is {cfg.num_classes}")
    need(bool(cfg.classifier) and bool(cfg.first_conv), "classifier and first_conv must name modules")
    if cfg.spatial_dims == 3:
        need(
            cfg.voxel_spacing is not None and len(cfg.voxel_spacing) == 3,
            "3D entries need voxel_spacing (3 values, mm)",
        )
    else:
        need(cfg.voxel_spacing is None, "voxel_spacing is for 3D entries only")
    need(0 < cfg.image_scale <= MAX_IMAGE_SCALE, f"image_scale must be in (0, {MAX_IMAGE_SCALE:g}], got {cfg.image_scale}")
    need(cfg.image_scale == 1.0 or cfg.spatial_dims == 2, "image_scale is for 2D entries only")

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


# --- validating a pretrained config read from JSON (config.json of hf-hub: / local-dir: names) ----------
MAX_CONFIG_DEPTH = 8  # nesting allowed inside arch_kwargs / metrics
MAX_IMAGE_SCALE = 16.0  # image_scale above this is a typo, not a model
_MODULE_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
_STR_FIELDS = ("architecture", "tag", "hf_hub_filename", "classifier", "first_conv", "interpolation", "method",
               "pretrain_data", "modality", "license_code", "license_weights", "license_data", "paper", "origin",
               "convert_from", "command", "notes")
_OPT_STR_FIELDS = ("file", "hf_hub_id", "hf_hub_revision", "url", "sha256")
_INTENSITY_FIELDS = ("kind", "mean", "std", "hu_min", "hu_max")


class PretrainedCfgError(ValueError):
    """A pretrained config (e.g. the ``zoo`` block of config.json) is malformed; names the field and the fix."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of lists / dicts (iterative, stops counting past ``limit``)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d + 1)
            if deepest > limit:
                return deepest
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def _json_like(value: Any) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                return False
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, float):
            if not math.isfinite(v):
                return False
        elif not (v is None or isinstance(v, (str, int, bool))):
            return False
    return True


def cfg_from_config_dict(
    data: Any, where: str = "config.json", *, require_sha256: bool = False,
    base_of: Callable[[str], PretrainedCfg] | None = None,
) -> PretrainedCfg:
    """Check every field of a JSON pretrained config (type, range, nesting) and build the :class:`PretrainedCfg`.

    Raises :class:`PretrainedCfgError` (a ``ValueError``) naming the field, e.g. ``pretrained_cfg.in_chans must
    be an int >= 1, got '3'``; nothing else, whatever the input. ``require_sha256``: the weights it describes
    must be checkable (a 64-hex ``sha256``). Whether ``classifier`` / ``first_conv`` name the right modules is
    checked when the model exists (:func:`zoo.models.builder.check_cfg_modules`). ``base_of`` (an architecture
    name -> its registered cfg, e.g. :func:`zoo.meta.registry.get_pretrained_cfg`) checks that the architecture
    is known and that its arch kwargs keep their types; :func:`zoo.meta.registry.cfg_from_config` passes it.
    """
    fix = "Write the config again with zoo.save_for_hf (or fix the field by hand)."

    def fail(field_name: str, problem: str) -> PretrainedCfgError:
        return PretrainedCfgError(f"{where}: pretrained_cfg.{field_name} {problem}. {fix}")

    if not isinstance(data, dict):
        raise PretrainedCfgError(f"{where}: pretrained_cfg must be a JSON object, got {type(data).__name__}. {fix}")
    known = {f.name for f in dataclasses.fields(PretrainedCfg)}
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise PretrainedCfgError(f"{where}: unknown pretrained_cfg fields {unknown[:8]}: the config was written by "
                                 f"another zoo version. Upgrade zoo (`pip install -U medzoo`) or remove them.")
    d = dict(data)
    for name in _STR_FIELDS:
        if name in d and not isinstance(d[name], str):
            raise fail(name, f"must be a string, got {type(d[name]).__name__}")
    for name in _OPT_STR_FIELDS:
        if name in d and d[name] is not None and not isinstance(d[name], str):
            raise fail(name, f"must be a string or null, got {type(d[name]).__name__}")
    if not d.get("architecture"):
        raise fail("architecture", "is missing or empty")
    for name in ("classifier", "first_conv"):
        if name in d and not _MODULE_PATH.match(d[name]):
            raise fail(name, f"must be a dotted module name such as 'fc' or 'head.fc', got {d[name]!r}")
    sha = d.get("sha256")
    if sha is not None and not _SHA256.match(sha):
        raise fail("sha256", f"must be 64 lowercase hex digits, got {sha[:80]!r}")
    if require_sha256 and sha is None:
        raise fail("sha256", "is missing or null, so the weights cannot be verified")
    rev = d.get("hf_hub_revision")
    if rev is not None and not _REVISION.match(rev):
        raise fail("hf_hub_revision", f"must be a full 40-hex commit hash, got {rev[:80]!r}")
    if "file_size" in d and d["file_size"] is not None and not (_is_int(d["file_size"]) and d["file_size"] > 0):
        raise fail("file_size", f"must be an int > 0 or null, got {d['file_size']!r:.80}")
    if "num_classes" in d and not (_is_int(d["num_classes"]) and 0 <= d["num_classes"] <= 1_000_000):
        raise fail("num_classes", f"must be an int in [0, 1000000], got {d['num_classes']!r:.80}")
    if "in_chans" in d and not (_is_int(d["in_chans"]) and 1 <= d["in_chans"] <= 4096):
        raise fail("in_chans", f"must be an int in [1, 4096], got {d['in_chans']!r:.80}")
    spatial = d.get("spatial_dims", 2)
    if not (_is_int(spatial) and spatial in SPATIAL_DIMS):
        raise fail("spatial_dims", f"must be 2 or 3, got {spatial!r:.80}")
    in_chans = d.get("in_chans", 3)
    if "input_size" in d:
        size = d["input_size"]
        if not (isinstance(size, list) and len(size) == spatial + 1 and all(_is_int(v) and v > 0 for v in size)):
            raise fail("input_size", f"must be {spatial + 1} positive ints (C + spatial), got {size!r:.80}")
        if size[0] != in_chans:
            raise fail("input_size", f"starts with {size[0]} channels, but in_chans is {in_chans}")
        d["input_size"] = tuple(size)
    elif spatial != 2 or in_chans != 3:
        raise fail("input_size", "is missing (needed unless the model takes 3 x H x W)")
    spacing = d.get("voxel_spacing")
    if spacing is not None:
        if not (isinstance(spacing, list) and len(spacing) == 3 and all(_is_num(v) and v > 0 for v in spacing)):
            raise fail("voxel_spacing", f"must be null or 3 positive numbers (mm), got {spacing!r:.80}")
        d["voxel_spacing"] = tuple(float(v) for v in spacing)
    if "crop_pct" in d and not (_is_num(d["crop_pct"]) and 0 < d["crop_pct"] <= 1):
        raise fail("crop_pct", f"must be a number in (0, 1], got {d['crop_pct']!r:.80}")
    if "image_scale" in d and not (_is_num(d["image_scale"]) and 0 < d["image_scale"] <= MAX_IMAGE_SCALE):
        raise fail("image_scale", f"must be a number in (0, {MAX_IMAGE_SCALE:g}], got {d['image_scale']!r:.80}")
    if "verified" in d and not isinstance(d["verified"], bool):
        raise fail("verified", f"must be true or false, got {d['verified']!r:.80}")
    if "label_names" in d:
        names = d["label_names"]
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise fail("label_names", f"must be a list of strings, got {names!r:.80}")
        if names and len(names) != d.get("num_classes", 0):
            raise fail("label_names", f"has {len(names)} names but num_classes is {d.get('num_classes', 0)}")
        d["label_names"] = tuple(names)
    for name in ("arch_kwargs", "metrics", "decision"):
        if name not in d:
            continue
        value = d[name]
        if not isinstance(value, dict):
            raise fail(name, f"must be a JSON object, got {type(value).__name__}")
        if _depth(value, MAX_CONFIG_DEPTH) > MAX_CONFIG_DEPTH:
            raise fail(name, f"is nested deeper than {MAX_CONFIG_DEPTH} levels")
        if not _json_like(value):
            raise fail(name, "holds values that are not JSON (non-string keys, NaN / Inf, objects)")
    if name_bad := [k for k in d.get("arch_kwargs", {}) if not k.isidentifier()]:
        raise fail("arch_kwargs", f"has keys that are not argument names: {name_bad[:8]}")
    if base_of is not None:
        _check_arch_kwargs(d["architecture"], d.get("arch_kwargs", {}), fail, base_of)
    if "intensity" in d:
        d["intensity"] = _intensity(d["intensity"], in_chans, fail)
    try:
        cfg = PretrainedCfg(**d)
    except (TypeError, ValueError) as err:  # pragma: no cover - every field is checked above
        raise PretrainedCfgError(f"{where}: pretrained_cfg does not fit ({err}). {fix}") from None
    return cfg


def _intensity(value: Any, in_chans: Any, fail: Any) -> Intensity:
    if not isinstance(value, dict):
        raise fail("intensity", f"must be a JSON object, got {type(value).__name__}")
    unknown = sorted(str(k) for k in value if k not in _INTENSITY_FIELDS)
    if unknown:
        raise fail("intensity", f"has unknown fields {unknown[:8]}")
    kind = value.get("kind", "mean_std")
    if kind not in INTENSITY_KINDS:
        raise fail("intensity.kind", f"must be one of {INTENSITY_KINDS}, got {kind!r:.80}")
    out: dict[str, Any] = {"kind": kind}
    for key in ("mean", "std"):
        v = value.get(key, list(IMAGENET_MEAN if key == "mean" else IMAGENET_STD))
        if v is None:
            if kind == "mean_std":
                raise fail(f"intensity.{key}", "is needed for kind 'mean_std'")
            out[key] = None
            continue
        if not (isinstance(v, list) and all(_is_num(x) for x in v)):
            raise fail(f"intensity.{key}", f"must be a list of numbers, got {v!r:.80}")
        if kind == "mean_std" and len(v) != in_chans:
            raise fail(f"intensity.{key}", f"has {len(v)} values for {in_chans} input channels")
        if key == "std" and any(x <= 0 for x in v):
            raise fail("intensity.std", f"must be > 0, got {v!r:.80}")
        out[key] = tuple(float(x) for x in v)
    for key in ("hu_min", "hu_max"):
        v = value.get(key)
        if v is not None and not _is_num(v):
            raise fail(f"intensity.{key}", f"must be a number or null, got {v!r:.80}")
        out[key] = v
    if kind == "hu_window" and not (out["hu_min"] is not None and out["hu_max"] is not None
                                    and out["hu_min"] < out["hu_max"]):
        raise fail("intensity", "kind 'hu_window' needs hu_min < hu_max")
    return Intensity(**out)


def _json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number" if isinstance(v, float) else "int"
    return {str: "string", list: "list", tuple: "list", dict: "object"}.get(type(v), "null" if v is None else "other")


def _check_arch_kwargs(architecture: str, arch_kwargs: dict[str, Any], fail: Any,
                       base_of: Callable[[str], PretrainedCfg]) -> None:
    """The architecture must be zoo's; arch kwargs it registers must keep their JSON type (ints stay > 0)."""
    if "." in architecture:
        raise fail("architecture", f"must be an architecture without a tag, got {architecture[:80]!r}")
    try:
        with warnings.catch_warnings():  # a config written under a deprecated name still validates
            warnings.simplefilter("ignore", DeprecationWarning)
            base = base_of(architecture)
    except (KeyError, ValueError):
        raise fail("architecture", f"{architecture[:80]!r} is not a zoo architecture (see `zoo list`)") from None
    for key, ref in base.arch_kwargs.items():
        if key not in arch_kwargs or ref is None:
            continue
        value = arch_kwargs[key]
        want, got = _json_type(ref), _json_type(value)
        if not (want == got or (want == "number" and got == "int")):
            raise fail(f"arch_kwargs.{key}", f"must be of type {want} like {ref!r}, got {value!r:.80}")
        if want == "int" and value <= 0:
            raise fail(f"arch_kwargs.{key}", f"must be > 0, got {value}")
