"""ONNX export of zoo models, verified by onnxruntime, with optional static int8 quantization.

The flow of :func:`export_onnx`: model (by name or module) -> ``torch.onnx.export(dynamo=True)``
into one self-contained file (the TorchScript exporter only if that fails) -> provenance in the
ONNX ``metadata_props`` -> onnxruntime vs PyTorch on real images or CT cubes from the shared data at
two batch sizes -> optional int8 (QDQ, per-channel, calibrated on real data) checked against fp32.
The file appears at ``path`` only once every check has passed.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..meta.cfg import PretrainedCfg
from ..meta.registry import get_pretrained_cfg, split_model_name

__all__ = [
    "ExportError",
    "VerificationError",
    "Tolerance",
    "BatchCheck",
    "VerifyReport",
    "ExportResult",
    "export_onnx",
    "opset_range",
    "quantize_onnx",
    "verify_onnx",
    "compare_outputs",
    "sample_inputs",
    "read_metadata",
    "ort_session",
    "CALIBRATION_METHODS",
]

_logger = logging.getLogger(__name__)
META_PREFIX = "zoo."
INPUT_NAME = "input"
# int8 activation-range methods of quantize_onnx -> onnxruntime's CalibrationMethod member
CALIBRATION_METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}
_QUIET_LOGGERS = ("torch.__trace", "torch.onnx", "torch.export", "torch._dynamo", "torch._export", "torch.fx", "onnxscript",
                  "onnx_ir", "onnxruntime", "root")
_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
_VOLUME_EXTS = (".nii", ".nii.gz")


class ExportError(RuntimeError):
    """The model cannot be exported (or quantized); the message names the cause and the fix."""


class VerificationError(ExportError):
    """onnxruntime's output differs from the reference beyond tolerance; the file was not written."""


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria. fp32: ``max|ort - torch| <= atol + rtol * max|torch|`` and cosine >= ``min_cosine``
    (per sample and output); int8 vs fp32: cosine >= ``int8_min_cosine``."""

    atol: float = 1e-4
    rtol: float = 1e-4
    min_cosine: float = 0.99999
    int8_min_cosine: float = 0.98


@dataclass
class BatchCheck:
    """The comparison of one batch: worst case over samples and outputs."""

    batch_size: int
    max_abs_diff: float
    ref_max_abs: float
    cosine: float  # the smallest per-sample cosine similarity
    agreement: float | None  # top-1 (classification) or per-voxel label agreement; None for features
    passed: bool


@dataclass
class VerifyReport:
    """onnxruntime (``runtime``) against a reference (``reference``) on real inputs."""

    runtime: str
    reference: str
    data: str
    checks: list[BatchCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def max_abs_diff(self) -> float:
        return max(c.max_abs_diff for c in self.checks)

    @property
    def cosine(self) -> float:
        return min(c.cosine for c in self.checks)

    @property
    def agreement(self) -> float | None:
        values = [c.agreement for c in self.checks if c.agreement is not None]
        return min(values) if values else None

    def summary(self) -> str:
        """One line per batch size."""
        lines = []
        for c in self.checks:
            agree = "" if c.agreement is None else f", agreement {100 * c.agreement:.1f}%"
            lines.append(
                f"{self.runtime} vs {self.reference}, batch {c.batch_size}: max abs diff {c.max_abs_diff:.3g} "
                f"(output scale {c.ref_max_abs:.3g}), cosine {c.cosine:.6f}{agree} "
                f"-> {'ok' if c.passed else 'FAILED'}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "reference": self.reference, "data": self.data,
                "passed": self.passed, "checks": [asdict(c) for c in self.checks]}


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote and measured."""

    path: Path
    model_name: str
    exporter: str  # "dynamo" or "torchscript"
    opset: int
    input_shape: tuple[int | str, ...]
    output_names: list[str]
    metadata: dict[str, str]
    fp32: VerifyReport | None = None
    int8: VerifyReport | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        """A human-readable report (the CLI prints it)."""
        shape = "x".join(str(s) for s in self.input_shape)
        lines = [
            f"wrote {self.path} ({self.path.stat().st_size / 1e6:.1f} MB) in {self.seconds:.1f} s",
            f"model {self.model_name}; exporter {self.exporter}, opset {self.opset}; input {INPUT_NAME} {shape}; "
            f"outputs {', '.join(self.output_names)}",
            f"weights: {self.metadata.get('weights', '?')}"
            + (f" (sha256 {self.metadata['weights_sha256']})" if self.metadata.get("weights_sha256") else ""),
        ]
        for report in (self.fp32, self.int8):
            if report is not None:
                lines.append(f"data: {report.data}")
                lines.append(report.summary())
        if self.fp32 is None:
            lines.append("not verified (verify=False)")
        return "\n".join(lines)


# --- quiet -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def _silence_fds() -> Iterator[Path]:
    """Send the process's stdout / stderr file descriptors (C++ logs included) to a temporary file."""
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = []
        for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
            with contextlib.suppress(Exception):
                stream.flush()
            saved.append((fd, os.dup(fd)))
            os.dup2(sink.fileno(), fd)
        try:
            yield sink
        finally:
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)


@contextlib.contextmanager
def _quiet(verbose: bool) -> Iterator[io.StringIO]:
    """Silence exporter / quantizer chatter (Python prints, C++ output, warnings, library logs)
    unless ``verbose``; what was said is kept in the yielded buffer (Python-level output only)."""
    buf = io.StringIO()
    if verbose:
        yield buf
        return
    levels = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    try:
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings(), _silence_fds(), contextlib.redirect_stdout(buf), \
                contextlib.redirect_stderr(buf):
            warnings.simplefilter("ignore")
            yield buf
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


# --- real inputs -----------------------------------------------------------------------------------
def _normalise_input_size(cfg: PretrainedCfg, in_chans: int, input_size: int | Sequence[int] | None) -> tuple[int, ...]:
    """``(C, *spatial)`` from None (the cfg's), one int (square / cube), the spatial sizes, or C + spatial."""
    dims = cfg.spatial_dims
    if input_size is None:
        spatial = tuple(cfg.input_size[1:])
    elif isinstance(input_size, int):
        spatial = (input_size,) * dims
    else:
        sizes = tuple(int(s) for s in input_size)
        if len(sizes) == dims + 1:
            if sizes[0] != in_chans:
                raise ExportError(
                    f"input_size {sizes} has {sizes[0]} channel(s) but the model takes {in_chans}. Give the "
                    f"spatial size only, or create the model with in_chans={sizes[0]}."
                )
            spatial = sizes[1:]
        elif len(sizes) == dims:
            spatial = sizes
        elif len(sizes) == 1:
            spatial = sizes * dims
        else:
            raise ExportError(
                f"input_size {sizes} does not fit a {dims}D model: give one size, {dims} spatial sizes, "
                f"or {dims + 1} values (C + spatial)."
            )
    if any(s <= 0 for s in spatial):
        raise ExportError(f"input_size must be positive, got {spatial}")
    return (in_chans, *spatial)


def _image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_EXTS and p.is_file())


def _volume_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.name.lower().endswith(_VOLUME_EXTS) and p.is_file())


def _spread(items: Sequence[Path], n: int) -> list[Path]:
    """``n`` items evenly spread over a sorted list (deterministic)."""
    if len(items) <= n:
        return list(items)
    idx = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in idx]


def _default_image_files(cfg: PretrainedCfg, split: str, n: int) -> tuple[list[Path], str]:
    from ..data.paths import data_path

    if cfg.modality == "fundus":
        files = _image_files(data_path("fundus", "eyepacs", "images"))
        half = len(files) // 2  # first half verifies, second half calibrates
        files = files[:half] if split == "verify" else files[half:]
        return _spread(files, n), "EyePACS fundus photographs"
    part = "test" if split == "verify" else "train"
    root = data_path("cxr", "kermany", part)
    normal, pneumonia = _image_files(root / "NORMAL"), _image_files(root / "PNEUMONIA")
    k = n // 2
    files = _spread(normal, n - k) + _spread(pneumonia, k)
    return files, f"Kermany chest X-rays ({part} split)"


def _default_volume_files(split: str) -> tuple[list[Path], str]:
    from ..data.paths import data_path

    name = "lungdx_a0001_series2.nii.gz" if split == "verify" else "lungdx_a0001_series3.nii.gz"
    return [data_path("ct", "volumes", name)], f"cubes from the chest CT {name}"


def _image_inputs(files: Sequence[Path], cfg: PretrainedCfg, input_size: tuple[int, ...]) -> list[np.ndarray]:
    """Images through the model's own preprocessing (:func:`zoo.create_transform`) at ``input_size``."""
    from PIL import Image

    from ..data.transforms import create_transform, resolve_data_config

    transform = create_transform(resolve_data_config(cfg, input_size=input_size))
    out = []
    for path in files:
        with Image.open(path) as img:
            out.append(transform(img).numpy())
    return out


@functools.lru_cache(maxsize=4)
def _read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    import nibabel as nib

    img = nib.load(str(path))
    return np.asanyarray(img.dataobj), tuple(float(z) for z in img.header.get_zooms()[:3])


def _volume_cubes(path: Path, cfg: PretrainedCfg, input_size: tuple[int, ...], n: int) -> list[np.ndarray]:
    """The ``n`` most textured of a 5x5x5 grid of cubes from a NIfTI CT, each through the model's own
    preprocessing (resampled to its voxel spacing, HU-windowed, cropped to ``input_size``)."""
    from ..data.transforms import create_transform, resolve_data_config

    volume, spacing = _read_nifti(path)
    if volume.ndim != 3:
        raise ExportError(f"{path} is not a 3D volume (shape {volume.shape})")
    transform = create_transform(resolve_data_config(cfg, input_size=input_size))
    target = cfg.voxel_spacing or spacing
    # blocks that resample to at most input_size (the transform pads, it never crops)
    block = [min(v, int((c - 1) * t / s) + 1) for v, c, t, s in zip(volume.shape, input_size[1:], target, spacing,
                                                                      strict=True)]
    starts = [sorted({int(round(x)) for x in np.linspace(0, v - b, 5)}) for v, b in zip(volume.shape, block,
                                                                                          strict=True)]
    cubes = [
        transform(volume[i:i + block[0], j:j + block[1], k:k + block[2]], spacing=spacing).numpy()
        for i in starts[0] for j in starts[1] for k in starts[2]
    ]
    order = np.argsort([-float(c.std()) for c in cubes], kind="stable")
    return [cubes[i] for i in order[:n]]


def sample_inputs(
    cfg: PretrainedCfg,
    input_size: tuple[int, ...],
    n: int,
    split: str = "verify",
    source: str | os.PathLike[str] | None = None,
) -> tuple[np.ndarray, str]:
    """``n`` preprocessed real inputs ``(n, *input_size)`` and a description of where they come from.

    2D: chest X-rays (Kermany; test split to verify, train split to calibrate) or, for fundus
    models, EyePACS photographs (disjoint halves). 3D: the most textured cubes of a real chest CT
    (one reconstruction to verify, another to calibrate). Both go through the model's own
    preprocessing (:func:`zoo.create_transform`). ``source`` replaces the default with a directory
    (or file) of images (2D) or NIfTI volumes (3D).
    """
    if cfg.spatial_dims == 2:
        if source is None:
            files, desc = _default_image_files(cfg, split, n)
        else:
            root = Path(source)
            if not root.exists():
                raise ExportError(f"calibration data {root} does not exist: give a directory of images")
            files = [root] if root.is_file() else _spread(_image_files(root), n)
            desc = f"images from {root}"
            if not files or files[0].suffix.lower() not in _IMAGE_EXTS:
                raise ExportError(
                    f"no images ({', '.join(_IMAGE_EXTS)}) found in {root}: a 2D model is calibrated on images"
                )
        arrays = _image_inputs(files, cfg, input_size)
    else:
        if source is None:
            files, desc = _default_volume_files(split)
        else:
            root = Path(source)
            if not root.exists():
                raise ExportError(f"calibration data {root} does not exist: give a directory of NIfTI volumes")
            files = [root] if root.is_file() else _volume_files(root)
            desc = f"cubes from the volumes in {root}"
            if not files or not files[0].name.lower().endswith(_VOLUME_EXTS):
                raise ExportError(f"no NIfTI volumes (.nii, .nii.gz) found in {root}: a 3D model needs volumes")
        per_file = -(-n // len(files))
        arrays = []
        for p in files:
            arrays += _volume_cubes(p, cfg, input_size, per_file)
    while len(arrays) < n:  # fewer files than samples: reuse them mirrored, so that samples differ
        arrays.append(np.flip(arrays[len(arrays) % len(arrays)], axis=-1).copy())
    return np.stack(arrays[:n]).astype(np.float32), f"{desc}, {n} samples, input {'x'.join(map(str, input_size))}"


# --- model ------------------------------------------------------------------------------------------
def _resolve_model(
    model_or_name: str | nn.Module,
    features_only: bool,
    pretrained: bool | None,
    checkpoint_path: str | os.PathLike[str] | None,
    model_kwargs: dict[str, Any],
) -> tuple[nn.Module, PretrainedCfg, str | None]:
    """The module in eval mode, its cfg, and the sha256 of the weights it was loaded from (if any)."""
    if isinstance(model_or_name, nn.Module):
        if model_kwargs or checkpoint_path is not None or pretrained:
            raise ExportError("pretrained / checkpoint_path / model kwargs apply to a model name, not a module")
        model = model_or_name
        cfg = getattr(model, "pretrained_cfg", None)
        if not isinstance(cfg, PretrainedCfg):
            raise ExportError(
                f"{type(model).__name__} has no zoo pretrained_cfg; create it with zoo.create_model(name), "
                f"or set model.pretrained_cfg = zoo.get_pretrained_cfg(name) to say what it expects."
            )
        return model, cfg, None
    if not isinstance(model_or_name, str):
        raise ExportError(f"model_or_name must be a zoo model name or an nn.Module, got {type(model_or_name).__name__}")
    from ..hub import is_hub_name
    from ..models.builder import create_model

    if is_hub_name(model_or_name) and checkpoint_path is None:  # local-dir: / hf-hub: (e.g. a `zoo finetune` run)
        load = pretrained is not False
        model = create_model(model_or_name, pretrained=load, features_only=features_only, **model_kwargs)
        return model, model.pretrained_cfg, model.pretrained_cfg.sha256 if load else None
    cfg = get_pretrained_cfg(model_or_name)  # UnknownModelError names the closest models
    tag = split_model_name(model_or_name)[1]
    if pretrained is None:  # as create_model: a bare architecture is built without weights
        pretrained = bool(tag) and cfg.has_weights
        if not tag and cfg.has_weights:
            _logger.warning("%s: exporting a randomly initialised network; name a checkpoint (e.g. %s) "
                            "for its weights", model_or_name, cfg.name)
    if checkpoint_path is not None and not Path(checkpoint_path).is_file():
        raise ExportError(f"checkpoint {checkpoint_path} does not exist")
    # the builder resolves and hashes the weights once and records them on the model
    model = create_model(model_or_name, pretrained=bool(pretrained) and checkpoint_path is None,
                         features_only=features_only, checkpoint_path=checkpoint_path, **model_kwargs)
    source = getattr(model, "pretrained_source", None)
    sha256 = source.sha256 if source is not None else None
    return model, model.pretrained_cfg, sha256


def _outputs(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)) and all(isinstance(o, torch.Tensor) for o in out):
        return list(out)
    if isinstance(out, dict):
        return list(out.values())
    raise ExportError(f"the model returns {type(out).__name__}; ONNX export needs tensors")


def _torch_outputs(model: nn.Module, x: np.ndarray) -> list[np.ndarray]:
    with torch.inference_mode():
        return [o.float().numpy() for o in _outputs(model(torch.from_numpy(x)))]


# --- export -----------------------------------------------------------------------------------------
def _export_dynamo(model: nn.Module, example: torch.Tensor, path: Path, dynamic: dict[int, str], opset: int | None,
                   output_names: list[str], verbose: bool) -> None:
    dims: dict[int, Any] = {}
    for axis, name in dynamic.items():
        dims[axis] = torch.export.Dim(name) if axis == 0 else torch.export.Dim.AUTO
    torch.onnx.export(
        model, (example,), str(path), dynamo=True, external_data=False, opset_version=opset,
        input_names=[INPUT_NAME], output_names=output_names, verbose=verbose,
        dynamic_shapes=(dims,) if dims else None,
    )


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path, dynamic: dict[int, str],
                        opset: int | None, output_names: list[str], verbose: bool) -> None:
    axes = {INPUT_NAME: dict(dynamic)} if dynamic else None
    if axes is not None and 0 in dynamic:
        for name in output_names:
            axes[name] = {0: dynamic[0]}
    torch.onnx.export(
        model, (example,), str(path), dynamo=False, opset_version=opset or 17, input_names=[INPUT_NAME],
        output_names=output_names, dynamic_axes=axes, verbose=verbose,
    )


_EXPORTERS: dict[str, Callable[..., None]] = {"dynamo": _export_dynamo, "torchscript": _export_torchscript}


def _short_error(err: BaseException) -> str:
    """The innermost cause of an exporter error, as one line without terminal colours."""
    while err.__cause__ is not None:
        err = err.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return f"{type(err).__name__}: {line[:300]}"


def _run_exporters(
    model: nn.Module, example: torch.Tensor, path: Path, dynamic: dict[int, str], opset: int | None,
    output_names: list[str], exporter: str, verbose: bool,
) -> tuple[str, str]:
    """Export with the dynamo exporter, or TorchScript where it fails; returns (exporter, why fallback)."""
    order = ["dynamo", "torchscript"] if exporter == "auto" else [exporter]
    if exporter not in ("auto", *_EXPORTERS):
        raise ExportError(f"exporter must be 'auto', 'dynamo' or 'torchscript', got {exporter!r}")
    errors: list[str] = []
    for name in order:
        path.unlink(missing_ok=True)
        try:
            with _quiet(verbose) as chatter:
                _EXPORTERS[name](model, example, path, dynamic, opset, output_names, verbose)
        except Exception as err:  # the exporters raise many types; each is reported
            _logger.debug("%s exporter output:\n%s", name, chatter.getvalue())
            first = _short_error(err)
            errors.append(f"{name}: {first}")
            if name != order[-1]:
                _logger.warning("the dynamo exporter failed (%s); falling back to the TorchScript exporter", first)
            continue
        return name, "; ".join(errors)
    raise ExportError("ONNX export failed:\n  " + "\n  ".join(errors) + "\nRerun with --verbose for the exporters' logs.")


def _guard_pad_before_maxpool(model: Any) -> int:
    """Keep onnxruntime from fusing a zero ``Pad`` into the next ``MaxPool`` (its ``Pad_Fusion`` rule moves
    the padding into MaxPool's ``pads``, which pad with -inf, not 0: wrong wherever a window's values are
    all negative, e.g. BiT ResNetV2's stem). An explicit ``axes`` input listing every axis means the same
    padding and is outside the rule's pattern. Returns the number of Pad nodes changed."""
    import onnx
    from onnx import numpy_helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    changed = 0
    for node in model.graph.node:
        if node.op_type != "Pad" or node.domain not in ("", "ai.onnx") or len(node.input) > 3:
            continue
        if not any(c.op_type == "MaxPool" for c in consumers.get(node.output[0], [])):
            continue
        if opset < 18:
            _logger.warning("opset %d: cannot guard Pad %s before MaxPool against onnxruntime's Pad_Fusion; "
                            "verification will tell whether it matters (export with opset >= 18)", opset, node.name)
            continue
        pads = consts.get(node.input[1]) if len(node.input) > 1 else None
        if pads is None:
            continue
        axes_name = f"{node.name or node.output[0]}_all_axes"
        model.graph.initializer.append(numpy_helper.from_array(np.arange(len(pads) // 2, dtype=np.int64), axes_name))
        while len(node.input) < 3:
            node.input.append("")
        node.input.append(axes_name)
        changed += 1
    if changed:
        onnx.checker.check_model(model)
    return changed


def _graph_input_shape(path: Path) -> list[int | str]:
    import onnx

    graph_input = onnx.load(str(path), load_external_data=False).graph.input[0]
    return [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``zoo.*`` metadata of an exported file (keys without the prefix)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key[len(META_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(META_PREFIX)}


def _write_metadata(path: Path, meta: dict[str, str], doc: str) -> int:
    """Add ``zoo.*`` metadata props, check the model, save it as one file; return its opset."""
    import onnx

    model = onnx.load(str(path))
    keep = [p for p in model.metadata_props if not p.key.startswith(META_PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in meta.items():
        model.metadata_props.add(key=META_PREFIX + key, value=value)
    model.doc_string = doc
    if _guard_pad_before_maxpool(model):
        _logger.info("guarded Pad -> MaxPool against onnxruntime's Pad_Fusion in %s", path.name)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


# --- onnxruntime ------------------------------------------------------------------------------------
def ort_session(path: str | os.PathLike[str], threads: int | None = None) -> Any:
    """A CPU onnxruntime session with warnings silenced (``threads``: intra-op threads, default torch's)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    b = b.reshape(b.shape[0], -1).astype(np.float64)
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    # two all-zero rows are identical; one zero row against a non-zero one is not
    return np.where(den > 0, num / np.maximum(den, 1e-300), np.where(np.abs(a - b).max(1) == 0, 1.0, 0.0))


def _agreement(out: np.ndarray, ref: np.ndarray) -> float:
    """Top-1 agreement (logits ``(N, K)``) or per-voxel label agreement (dense ``(N, K, ...)``)."""
    if ref.shape[1] == 1:  # one output channel: the sign of the logit is the label
        return float(((out > 0) == (ref > 0)).mean())
    return float((out.argmax(1) == ref.argmax(1)).mean())


def compare_outputs(
    outs: Sequence[np.ndarray], refs: Sequence[np.ndarray], batch_size: int, *, atol: float, rtol: float,
    min_cosine: float, labels: bool,
) -> BatchCheck:
    """Compare every output of one batch: max abs diff, smallest per-sample cosine, label agreement."""
    if len(outs) != len(refs):
        raise VerificationError(f"the ONNX model has {len(outs)} outputs, the reference {len(refs)}")
    diff, scale, cos, agree = 0.0, 0.0, 1.0, []
    for out, ref in zip(outs, refs, strict=True):
        if out.shape != ref.shape:
            raise VerificationError(f"output shape {out.shape} != reference shape {ref.shape}")
        diff = max(diff, float(np.abs(out - ref).max()))
        scale = max(scale, float(np.abs(ref).max()))
        cos = min(cos, float(_cosine_rows(out, ref).min()))
        if labels:
            agree.append(_agreement(out, ref))
    if not np.isfinite(diff):
        cos = float("nan")
    passed = bool(diff <= atol + rtol * scale and cos >= min_cosine)
    return BatchCheck(batch_size, diff, scale, cos, min(agree) if agree else None, passed)


def _run_ort(session: Any, x: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(o, dtype=np.float32) for o in session.run(None, {INPUT_NAME: x})]


def verify_onnx(
    path: str | os.PathLike[str],
    reference: nn.Module | str | os.PathLike[str],
    inputs: np.ndarray,
    batch_sizes: Sequence[int],
    *,
    atol: float = Tolerance.atol,
    rtol: float = Tolerance.rtol,
    min_cosine: float = Tolerance.min_cosine,
    labels: bool = False,
    data: str = "",
) -> VerifyReport:
    """Run ``path`` in onnxruntime against ``reference`` (a module in eval mode, or another ONNX file)
    on consecutive slices of ``inputs`` of each batch size; never raises on a mismatch (see ``passed``)."""
    session = ort_session(path)
    ref_session = None if isinstance(reference, nn.Module) else ort_session(reference)
    report = VerifyReport(
        runtime="onnxruntime" if ref_session is None else "onnxruntime int8",
        reference="pytorch eval" if ref_session is None else "onnxruntime fp32",
        data=data,
    )
    start = 0
    for bs in batch_sizes:
        if start + bs > len(inputs):
            start = 0
        x = np.ascontiguousarray(inputs[start:start + bs])
        start += bs
        refs = _torch_outputs(reference, x) if ref_session is None else _run_ort(ref_session, x)
        report.checks.append(compare_outputs(_run_ort(session, x), refs, bs, atol=atol, rtol=rtol,
                                             min_cosine=min_cosine, labels=labels))
    return report


# --- int8 -------------------------------------------------------------------------------------------
def _unshare_float_initializers(src: Path, dst: Path) -> int:
    """Give every node its own copy of a float initializer that several nodes read (the quantizer
    rejects shared weights; the ONNX optimizer merges identical constants such as the all-ones
    GroupNorm scales of an untrained network). Writes ``dst`` and returns the copies made."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    floats = {i.name: i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    seen: set[str] = set()
    copies = 0
    for node in model.graph.node:
        for slot, name in enumerate(node.input):
            if name not in floats:
                continue
            if name in seen:
                copy = numpy_helper.from_array(numpy_helper.to_array(floats[name]), f"{name}_copy{copies}")
                model.graph.initializer.append(copy)
                node.input[slot] = copy.name
                copies += 1
            else:
                seen.add(name)
    if copies:
        onnx.save(model, str(dst))
    return copies


def _check_calibration_method(method: str) -> None:
    if method not in CALIBRATION_METHODS:
        raise ExportError(f"calibration method must be one of {tuple(CALIBRATION_METHODS)}, got {method!r}")


def quantize_onnx(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calibration: np.ndarray,
    *,
    batch_size: int = 8,
    per_channel: bool = True,
    activations: str = "uint8",
    method: str = "minmax",
    calibration_desc: str = "",
    verbose: bool = False,
) -> None:
    """Static int8 quantization in QDQ format, keeping the fp32 file's ``zoo.*`` metadata.

    Weights: int8, symmetric, per output channel. Activations: ``uint8`` (asymmetric; the fast U8S8
    kernels of x86 CPUs with VNNI, measured 3-4x faster than S8S8 here) or ``int8``; their ranges come
    from ``calibration`` (preprocessed real inputs) by ``method``: ``"minmax"`` (the observed range),
    ``"percentile"`` (the 99.999th percentile of the absolute values, clipping outliers) or ``"entropy"``
    (the range minimising the KL divergence of the quantized histogram). On x86 CPUs without VNNI, U8S8
    can saturate: use ``activations="int8"`` for those, and verify on the target machine.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if activations not in ("uint8", "int8"):
        raise ExportError(f"activations must be 'uint8' or 'int8', got {activations!r}")
    _check_calibration_method(method)
    calibrate_method = CalibrationMethod[CALIBRATION_METHODS[method]]
    act_type = QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter([calibration[i:i + batch_size] for i in range(0, len(calibration), batch_size)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch)}

    out_path = Path(out_path)
    meta = read_metadata(fp32_path)
    with tempfile.TemporaryDirectory(prefix="zoo-quant-") as tmp, _quiet(verbose):
        prepared = Path(tmp) / "prepared.onnx"
        try:
            # no symbolic shape inference: on failure it leaves debug files in the working directory,
            # and ONNX shape inference is enough for convolutional networks
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        except Exception as err:  # shape inference of unusual graphs; quantization still works without
            _logger.info("quantization pre-processing failed (%s); quantizing the exported graph as it is", err)
            prepared = Path(fp32_path)
        unshared = Path(tmp) / "unshared.onnx"
        if _unshare_float_initializers(prepared, unshared):
            prepared = unshared
        try:
            quantize_static(
                str(prepared), str(out_path), _Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                activation_type=act_type, weight_type=QuantType.QInt8, calibrate_method=calibrate_method,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
        except Exception as err:
            raise ExportError(f"int8 quantization of {fp32_path} failed: {type(err).__name__}: {err}") from err
    meta.update({
        "quantization": json.dumps({
            "format": "QDQ", "weights": "int8 symmetric, per-channel" if per_channel else "int8 symmetric, per-tensor",
            "activations": f"{activations} asymmetric, per-tensor", "calibration": calibrate_method.name,
            "calibration_data": calibration_desc, "calibration_samples": len(calibration),
        }),
    })
    _write_metadata(out_path, meta, f"{meta.get('model', '')} (int8 QDQ), exported by zoo {__version__}")


# --- the public entry point --------------------------------------------------------------------------
def opset_range() -> tuple[int, int]:
    """The ONNX opsets the installed torch's exporters can write: ``(lowest, highest)``."""
    from torch.onnx import _constants

    return int(_constants.ONNX_MIN_OPSET), int(_constants.ONNX_MAX_OPSET)


def _check_opset(opset: int | None) -> None:
    if opset is None:
        return
    low, high = opset_range()
    if isinstance(opset, bool) or not isinstance(opset, int) or not low <= opset <= high:
        raise ExportError(f"opset {opset!r} is outside what torch {torch.__version__} exports ({low} to {high}); "
                          f"omit --opset for the exporter's default, or pick one in that range")


def _synthetic_inputs(size: tuple[int, ...], n: int) -> tuple[np.ndarray, str]:
    """Seeded standard-normal inputs ``(n, *size)``: enough to trace a graph when nothing is verified."""
    rng = np.random.default_rng(0)
    desc = f"synthetic input (seeded normal noise), {n} samples, input {'x'.join(map(str, size))}"
    return rng.standard_normal((n, *size)).astype(np.float32), desc


def _example_inputs(cfg: PretrainedCfg, size: tuple[int, ...], n: int, verify: bool,
                    sample: str | os.PathLike[str] | None) -> tuple[np.ndarray, str]:
    """The inputs to trace (and verify) on: ``sample`` if given, else real data to verify on, else synthetic."""
    if sample is not None:
        if not Path(sample).is_file():
            raise ExportError(f"sample {sample} does not exist (or is not a file): give an image (2D) or a "
                              f"NIfTI volume (3D)")
        try:
            return sample_inputs(cfg, size, n, "verify", sample)
        except (OSError, ValueError) as err:
            raise ExportError(f"cannot use {sample} as a sample input ({type(err).__name__}: {err}); give an "
                              f"image (2D) or a NIfTI volume (3D)") from None
    if not verify:
        return _synthetic_inputs(size, n)
    try:
        return sample_inputs(cfg, size, n, "verify")
    except FileNotFoundError as err:
        raise ExportError(f"{_first_line(err)} Verification needs real inputs: give one with --sample FILE "
                          f"(sample=...), or skip it with --no-verify (verify=False).") from None


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [""])[0]


def _check_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ExportError(f"output path {path} must end with .onnx (e.g. -o {path.with_suffix('.onnx').name})")
    if path.is_dir():
        raise ExportError(f"output path {path} is a directory; give a file name such as {path / 'model.onnx'}")
    if not path.parent.is_dir():
        raise ExportError(f"directory {path.parent} does not exist; create it first (mkdir -p {path.parent})")
    if not os.access(path.parent, os.W_OK):
        raise ExportError(f"directory {path.parent} is not writable; choose another output path")
    return path


def export_onnx(
    model_or_name: str | nn.Module,
    path: str | os.PathLike[str],
    input_size: int | Sequence[int] | None = None,
    batch_size: int = 1,
    dynamic_batch: bool = True,
    dynamic_spatial: bool = False,
    opset: int | None = None,
    features_only: bool = False,
    quantize: str | None = None,
    calibration_data: str | os.PathLike[str] | np.ndarray | None = None,
    verify: bool = True,
    *,
    pretrained: bool | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    tolerance: Tolerance = Tolerance(),
    exporter: str = "auto",
    calibration_samples: int = 32,
    calibration_method: str = "minmax",
    verbose: bool = False,
    sample: str | os.PathLike[str] | None = None,
    **model_kwargs: Any,
) -> ExportResult:
    """Export a zoo model to one self-contained ONNX file, verified by onnxruntime.

    Args:
        model_or_name: ``arch.tag`` (built with that checkpoint's sha256-verified weights), ``arch``
            (randomly initialised, as :func:`zoo.create_model`), or a module made by ``create_model``.
        path: the ``.onnx`` file to write (written only after verification passed).
        input_size: spatial size (one int, or per axis) or ``(C, *spatial)``; default the model's.
        batch_size: batch of the example input (the fixed batch when ``dynamic_batch=False``).
        dynamic_batch / dynamic_spatial: make the batch / spatial axes dynamic in the graph.
        opset: ONNX opset (default: the exporter's recommended one).
        features_only: export the multi-scale feature maps (one output per level).
        quantize: None or ``"int8"`` (static QDQ, per-channel weights); the file at ``path`` is int8.
        calibration_data: a directory (or file) of images / NIfTI volumes, or a preprocessed array
            ``(N, C, *spatial)``; default real data from ``$ZOO_DATA_DIR``.
        verify: compare onnxruntime with PyTorch (and int8 with fp32) on real data at two batch sizes
            and raise :class:`VerificationError` beyond ``tolerance``.
        pretrained: load the registered weights (default: when the name is an ``arch.tag`` with weights).
        checkpoint_path: a safetensors file to load instead.
        exporter: ``auto`` (dynamo, TorchScript where it fails), ``dynamo`` or ``torchscript``.
        calibration_samples / calibration_method: how many calibration inputs, and how activation ranges
            are set from them (``minmax``, ``percentile`` or ``entropy``; see :func:`quantize_onnx`).
        verbose: show the exporters' and quantizer's own output.
        sample: an image (2D) or NIfTI volume (3D) to trace and verify on instead of the data under
            ``$ZOO_DATA_DIR``. Without it and with ``verify=False``, a seeded synthetic input is traced, so
            no data is needed.
        **model_kwargs: passed to :func:`zoo.create_model` (e.g. ``num_classes``, ``in_chans``).
    """
    t0 = time.perf_counter()
    if quantize not in (None, "int8"):
        raise ExportError(f"quantize must be None or 'int8', got {quantize!r}")
    _check_calibration_method(calibration_method)
    if batch_size < 1:
        raise ExportError(f"batch_size must be >= 1, got {batch_size}")
    _check_opset(opset)
    path = _check_path(path)
    model, cfg, weights_sha256 = _resolve_model(model_or_name, features_only, pretrained, checkpoint_path, model_kwargs)
    if weights_sha256:
        name, tag = cfg.name, cfg.tag
    elif isinstance(model_or_name, str):
        name, tag = model_or_name, ""  # an architecture without its checkpoint's weights
    else:
        name, tag = cfg.name, cfg.tag
    in_chans = int(getattr(model, "in_chans", cfg.in_chans))
    size = _normalise_input_size(cfg, in_chans, input_size)
    was_training = model.training
    model.eval()
    try:
        # real inputs: the example, the verification batches (two sizes), the calibration set
        verify_sizes = [batch_size] if not dynamic_batch else sorted({batch_size, 2 if batch_size == 1 else 1})
        n_verify = max(sum(verify_sizes), batch_size)
        inputs, data_desc = _example_inputs(cfg, size, n_verify, verify, sample)
        example = torch.from_numpy(inputs[:batch_size].copy())
        calib, calib_desc = None, ""
        if quantize == "int8":  # read the calibration data first: a bad directory fails before any export
            if isinstance(calibration_data, np.ndarray):
                calib = calibration_data.astype(np.float32)
                if calib.ndim != len(size) + 1 or calib.shape[1:] != size:
                    raise ExportError(f"calibration array shape {calib.shape} does not match (N, *{size})")
                calib_desc = f"array of {len(calib)} samples"
            else:
                calib, calib_desc = sample_inputs(cfg, size, calibration_samples, "calibrate", calibration_data)
        try:
            with torch.inference_mode():
                out = model(example)
        except Exception as err:
            raise ExportError(f"the model does not run on a {tuple(example.shape)} input: {err}") from err
        if features_only and isinstance(out, torch.Tensor):
            raise ExportError(
                "features_only=True, but the module returns one tensor: pass the model name instead, or "
                "create the module with zoo.create_model(name, features_only=True)."
            )
        n_out = len(_outputs(out))
        output_names = ["output"] if n_out == 1 else [f"features_{i}" for i in range(n_out)]
        dynamic: dict[int, str] = {0: "batch"} if dynamic_batch else {}
        if dynamic_spatial:
            dynamic.update({2 + i: f"spatial_{i}" for i in range(cfg.spatial_dims)})

        with tempfile.TemporaryDirectory(prefix="zoo-export-", dir=path.parent) as tmp:
            fp32_path = Path(tmp) / "model.onnx"
            used, fallback_reason = _run_exporters(model, example, fp32_path, dynamic, opset, output_names,
                                                   exporter, verbose)
            input_shape = _graph_input_shape(fp32_path)
            wanted = {0: dynamic_batch, **{2 + i: dynamic_spatial for i in range(cfg.spatial_dims)}}
            static = [axis for axis, dyn in wanted.items() if dyn and not isinstance(input_shape[axis], str)]
            if static:
                raise ExportError(
                    f"the {used} exporter made input axes {static} of {name} static although they were asked "
                    f"to be dynamic; export with a larger batch_size / input_size, or without dynamic axes."
                )
            meta = {
                "model": name, "architecture": cfg.architecture, "tag": tag,
                "weights": "pretrained" if weights_sha256 else (
                    "unknown (module given)" if isinstance(model_or_name, nn.Module) else "random initialisation"),
                "weights_sha256": weights_sha256 or "",
                "pretrained_cfg": json.dumps(cfg.to_dict()),
                "input_name": INPUT_NAME,
                "input_shape": json.dumps(input_shape),
                "input_layout": "NCHW" if cfg.spatial_dims == 2 else "NCXYZ (NIfTI voxel order, slices last)",
                "output_names": json.dumps(output_names),
                "features_only": json.dumps(features_only),
                "exporter": used, "exporter_fallback_reason": fallback_reason,
                "torch_version": torch.__version__, "zoo_version": __version__,
            }
            opset_used = _write_metadata(fp32_path, meta, f"{name}, exported by zoo {__version__}")
            if opset is not None and opset_used != opset:
                raise ExportError(
                    f"the {used} exporter wrote opset {opset_used}, not the requested {opset}; {path} was not "
                    f"written. Omit --opset, pick another, or try --exporter "
                    f"{'torchscript' if used == 'dynamo' else 'dynamo'}."
                )
            labels = not features_only and int(getattr(model, "num_classes", 0) or 0) > 0
            fp32_report = int8_report = None
            if verify:
                fp32_report = verify_onnx(fp32_path, model, inputs, verify_sizes, atol=tolerance.atol,
                                          rtol=tolerance.rtol, min_cosine=tolerance.min_cosine, labels=labels,
                                          data=data_desc)
                _logger.info("%s", fp32_report.summary())
                if not fp32_report.passed:
                    raise VerificationError(
                        f"onnxruntime disagrees with PyTorch for {name} beyond tolerance "
                        f"(atol {tolerance.atol:g} + rtol {tolerance.rtol:g} x output scale, cosine >= "
                        f"{tolerance.min_cosine}); {path} was not written.\n{fp32_report.summary()}\n"
                        f"Rerun with verify=False (--no-verify) to keep the file anyway, or report the model."
                    )
                meta["verification"] = json.dumps(fp32_report.to_dict())
            final = fp32_path
            if calib is not None:
                int8_path = Path(tmp) / "model.int8.onnx"
                _write_metadata(fp32_path, meta, f"{name}, exported by zoo {__version__}")
                quantize_onnx(fp32_path, int8_path, calib, method=calibration_method, calibration_desc=calib_desc,
                              verbose=verbose)
                if verify:
                    int8_report = verify_onnx(int8_path, fp32_path, inputs, verify_sizes, atol=float("inf"), rtol=0.0,
                                              min_cosine=tolerance.int8_min_cosine, labels=labels,
                                              data=f"{data_desc}; calibrated on {calib_desc}")
                    _logger.info("%s", int8_report.summary())
                    if not int8_report.passed:
                        raise VerificationError(
                            f"the int8 model of {name} disagrees with fp32 (cosine < "
                            f"{tolerance.int8_min_cosine}); {path} was not written.\n{int8_report.summary()}\n"
                            f"Calibrate on data closer to the deployment data (--calibration DIR), or keep fp32."
                        )
                    meta_int8 = read_metadata(int8_path)
                    meta_int8["verification_int8"] = json.dumps(int8_report.to_dict())
                    _write_metadata(int8_path, meta_int8, f"{name} (int8 QDQ), exported by zoo {__version__}")
                final = int8_path
            else:
                _write_metadata(fp32_path, meta, f"{name}, exported by zoo {__version__}")
            os.replace(final, path)
    finally:
        model.train(was_training)
    return ExportResult(
        path=path, model_name=name, exporter=used, opset=opset_used,
        input_shape=tuple(input_shape), output_names=output_names,
        metadata=read_metadata(path), fp32=fp32_report, int8=int8_report, seconds=time.perf_counter() - t0,
    )
