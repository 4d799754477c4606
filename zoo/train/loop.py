"""The pretraining loop behind ``zoo pretrain``: data -> method(backbone) -> optimiser -> safetensors + config.

One process, or DDP under ``torchrun`` (gloo on CPU, nccl on GPU) with a ``DistributedSampler``.
Every random draw is seeded: the model is initialised from ``seed``, each rank augments with its
own generator, batches are drawn from a per-epoch permutation and CT cubes from ``(seed, epoch,
index)``. Checkpoints hold the method's state, the optimiser, the scheduler, the RNG states of
every rank and the step, as safetensors plus a small JSON, written atomically; ``resume=True``
continues the run exactly where it stopped (same losses as an uninterrupted run).

Outputs in ``out``: ``log.jsonl`` (one line per step: every loss term, lr, images/s),
``ckpt/`` (checkpoints), ``run.json`` (config and summary), ``<network>.safetensors`` (the exported
backbone, strict-loadable with ``zoo.create_model(network, checkpoint_path=..., **arch_kwargs)``) and
``pretrained_cfg.json`` (a registry entry, :meth:`zoo.PretrainedCfg.to_dict`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import statistics
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler

from .._io import atomic_write, atomic_write_json, sha256_file
from .._machine import cpu_info
from ..data.datasets import open_dataset
from ..meta.cfg import Intensity, validate_cfg
from ..meta.registry import get_pretrained_cfg, split_model_name
from ..methods import get_method
from ..methods.base import DataSpec, SSLMethod
from ..models.builder import create_model
from .checkpoints import load_checkpoint, restore, save_checkpoint
from .config import PretrainConfig, PretrainError, PretrainResult, split_legacy_hparams
from .distributed import Dist, all_mean, setup_distributed
from .precision import Precision, PrecisionError, make_precision
from .schedules import warmup_cosine_lambda

__all__ = ["pretrain", "prepare_method", "train_step", "build_optimizer"]

_logger = logging.getLogger(__name__)
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


# --- seeds ---------------------------------------------------------------------------------------
def _derive_seed(*parts: Any) -> int:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


# --- data ----------------------------------------------------------------------------------------
class _SkipBatches:
    """A batch sampler that skips its first ``skip`` batches (resuming mid-epoch)."""

    def __init__(self, inner: BatchSampler, skip: int) -> None:
        self.inner, self.skip = inner, skip

    def __iter__(self) -> Iterator[list[int]]:
        for i, batch in enumerate(self.inner):
            if i >= self.skip:
                yield batch

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.skip)


Batch = torch.Tensor | dict[str, torch.Tensor]


def _collate(batch: list[Any]) -> Batch:
    """Images of ``(image, label)`` items stacked; dict items (a method's own dataset) stacked per key."""
    if isinstance(batch[0], dict):
        return {k: torch.stack([item[k] for item in batch]) for k in batch[0]}
    return torch.stack([item[0] for item in batch])


def _to_device(x: Batch, device: torch.device) -> Batch:
    if isinstance(x, dict):
        return {k: v.to(device, non_blocking=True) for k, v in x.items()}
    return x.to(device, non_blocking=True)


def _resolve_init(init_from: str, arch: str, model_kwargs: dict[str, Any]) -> nn.Module:
    """A model holding the weights to start from: a registered ``arch.tag``, a safetensors file or a run directory.

    It is built with the head of ``arch`` (none for the ResNet backbones), so its keys are those the
    method exports.
    """
    num_classes = get_pretrained_cfg(split_model_name(arch)[0]).num_classes
    path = Path(init_from)
    if path.is_dir():
        candidates = [path / f"{arch}.safetensors"] + sorted(path.glob("*.safetensors"))
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise PretrainError(f"--init-from {init_from}: no .safetensors file in that directory")
        path = found
    try:
        if path.is_file():
            model = create_model(arch, checkpoint_path=path, num_classes=num_classes, **model_kwargs)
        else:
            model = create_model(init_from, pretrained=True, num_classes=num_classes, **model_kwargs)
    except Exception as err:
        raise PretrainError(
            f"--init-from {init_from}: cannot build {arch if path.is_file() else init_from} with those weights "
            f"({type(err).__name__}: {err}). Give a registered name with weights (`zoo list --pretrained`), a "
            f"safetensors file of {arch}, or a run directory."
        ) from err
    src = model.pretrained_source  # resolved and hashed once by the builder: not resolved again here
    _logger.info("--init-from %s: %s (sha256 %s, %s)", init_from, src.path, src.sha256,
                 "verified against the registry" if src.verified else "not registered")
    return model


def _backbone_modules(method: SSLMethod) -> list[tuple[nn.Module, set[str]]]:
    """Every copy of the exported backbone inside the method, as ``(module, exported keys)`` pairs.

    A copy is a sub-module whose state dict holds all the exported keys: the online encoder (or the
    encoder-decoder whose encoder is exported) and any momentum encoder, so that all start alike.
    """
    keys = set(method.export_state_dict())
    return [(m, keys) for m in method.modules() if m is not method and keys <= set(m.state_dict())]


def _init_backbone(method: SSLMethod, init_from: str, bn_only: bool) -> None:
    source = _resolve_init(init_from, method.arch, method.export_kwargs).state_dict()
    targets = _backbone_modules(method)
    if not targets:
        raise PretrainError(
            f"--init-from: no sub-module of {type(method).__name__} holds the keys of its exported backbone, "
            f"so zoo cannot tell where to load {init_from}."
        )
    trainable = any(
        p.requires_grad for module, keys in targets for name, p in module.named_parameters() if name in keys
    )
    if not trainable:
        raise PretrainError(f"--init-from: the backbone copies found in {type(method).__name__} are all frozen; "
                            f"the method does not expose its trained backbone under its exported keys.")
    for module, keys in targets:
        if set(source) != keys:
            missing, extra = sorted(keys - set(source))[:5], sorted(set(source) - keys)[:5]
            raise PretrainError(f"--init-from {init_from} does not fit {method.arch}: missing {missing}, "
                                f"unexpected {extra}")
        try:
            module.load_state_dict(source, strict=len(keys) == len(module.state_dict()))
        except RuntimeError as err:
            raise PretrainError(f"--init-from {init_from} does not fit {method.arch}: {err}") from err
    _logger.info("initialised %d backbone copies from %s", len(targets), init_from)
    if bn_only:
        for module, keys in targets:
            for sub_name, sub in module.named_modules():
                if isinstance(sub, _NORM_TYPES):
                    continue
                for p_name, p in sub.named_parameters(recurse=False):
                    if f"{sub_name}.{p_name}".lstrip(".") in keys:
                        p.requires_grad_(False)
        _logger.info("--bn-only: the backbone trains its normalisation layers only")


def build_optimizer(
    cfg: PretrainConfig, method: SSLMethod
) -> tuple[torch.optim.Optimizer, dict[str, Any]]:
    """SGD or AdamW over the trainable parameters; unset values come from the method's ``recipe``.

    A recipe with ``"decay_norm_bias": False`` exempts normalisation weights and biases (every
    parameter with fewer than 2 dimensions) from weight decay, as SupCon/SWCL do.
    """
    recipe = {"optimizer": "sgd", "lr": 0.03, "momentum": 0.9, "weight_decay": 1e-4}
    recipe.update(getattr(type(method), "recipe", {}) or {})
    name = (cfg.optimizer or recipe["optimizer"]).lower()
    lr = cfg.lr if cfg.lr is not None else recipe["lr"]
    wd = cfg.weight_decay if cfg.weight_decay is not None else recipe["weight_decay"]
    mom = cfg.momentum if cfg.momentum is not None else recipe.get("momentum", 0.9)
    params = [p for p in method.parameters() if p.requires_grad]
    if not params:
        raise PretrainError("no trainable parameter (check --bn-only and the method)")
    groups: list[dict[str, Any]] = [{"params": params}]
    if not recipe.get("decay_norm_bias", True):
        groups = [{"params": [p for p in params if p.ndim > 1]},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if name == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=lr, momentum=mom, weight_decay=wd)
    elif name == "adamw":
        opt = torch.optim.AdamW(groups, lr=lr, weight_decay=wd)
    else:
        raise PretrainError(f"--optimizer must be sgd or adamw, got {name!r}")
    return opt, {"optimizer": name, "lr": lr, "weight_decay": wd, "momentum": mom if name == "sgd" else None}


# --- export --------------------------------------------------------------------------------------
def _guess_modality(data: str, spatial_dims: int) -> str:
    low = data.lower()
    for key in ("cxr", "fundus", "retina", "ct"):
        if re.search(rf"(^|[^a-z]){key}", low):
            return {"retina": "fundus"}.get(key, key)
    return "ct" if spatial_dims == 3 else ""


def _export(
    out: Path, method: SSLMethod, cfg: PretrainConfig, dataset: Dataset, spatial_dims: int, summary: dict[str, Any],
    total_steps: int,
) -> tuple[Path, Path, list[str]]:
    """Write the backbone and its registry entry (also for a run stopped early: its notes say so)."""
    state = method.export_state_dict()
    if cfg.fp16:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    weights = out / f"{method.arch}.safetensors"
    # one metadata key: safetensors writes a metadata map in arbitrary order, one entry keeps the bytes stable
    meta = {"zoo": json.dumps({"arch": method.arch, "method": cfg.method}, sort_keys=True)}
    atomic_write(weights, lambda p: save_file(state, str(p), metadata=meta))
    # the exported file must strict-load into the architecture it claims (with the method's model kwargs)
    model_kwargs = method.export_kwargs
    create_model(method.arch, checkpoint_path=weights, **model_kwargs)
    base = get_pretrained_cfg(method.arch)
    in_chans = int(model_kwargs.pop("in_chans", base.in_chans))
    if spatial_dims == 2:
        input_size: tuple[int, ...] = (in_chans, cfg.img_size, cfg.img_size)
        intensity, spacing = getattr(method, "intensity", None) or base.intensity, None
    else:
        input_size = (1, *cfg.cube_size)
        hu = getattr(dataset, "hu_window", None)
        intensity = Intensity.hu(*hu) if hu else Intensity(kind="unit", mean=None, std=None)
        spacing = tuple(getattr(dataset, "spacing", None) or base.voxel_spacing or (1.0, 1.0, 1.0))
    tag = cfg.tag or re.sub(r"[^a-z0-9_]+", "_", out.name.lower()).strip("_") or "pretrained"
    describe = getattr(dataset, "describe", None)
    # the architecture's defaults, without where the default tag's own bytes came from (an official entry's
    # origin / convert layout / hub address describe that file, not this run's)
    entry = base.replace(
        origin="", convert_from="", hf_hub_id=None, hf_hub_revision=None, url=None,
        tag=tag,
        arch_kwargs={**base.arch_kwargs, **model_kwargs},
        in_chans=in_chans,
        file=weights.name,
        sha256=sha256_file(weights),
        file_size=weights.stat().st_size,
        input_size=input_size,
        voxel_spacing=spacing,
        intensity=intensity,
        method=cfg.method,
        pretrain_data=describe() if describe else cfg.data,
        modality=cfg.modality or _guess_modality(cfg.data, spatial_dims),
        license_weights=cfg.license_weights,
        license_data=cfg.license_data,
        command=cfg.command or cfg.to_command(),
        verified=False,
        metrics={
            "pretrain_steps": summary["steps"],
            "pretrain_final_loss": summary["final_loss"],
            "pretrain_images_per_s": summary["images_per_s"],
        },
        notes=((f"STOPPED EARLY at step {summary['steps']} of {total_steps}; " if summary["steps"] < total_steps
                else "")
               + f"seed {cfg.seed}; {summary['world_size']} process(es); wall time {summary['wall_time_s']:.1f} s; "
               f"torch {torch.__version__}; "
               + ("" if cfg.precision == "fp32" else f"{cfg.precision} autocast training; ")
               + "made by `zoo pretrain`"
               + (f"; initialised from {cfg.init_from}" + (" (BN only)" if cfg.bn_only else "") if cfg.init_from
                  else "")),
    )
    problems = validate_cfg(entry)
    for p in problems:
        _logger.warning("registry entry incomplete: %s", p)
    cfg_path = out / "pretrained_cfg.json"
    atomic_write_json(cfg_path, entry.to_dict())
    return weights, cfg_path, problems


# --- the loop ------------------------------------------------------------------------------------
def prepare_method(method: SSLMethod, device: torch.device, spatial_dims: int, channels_last: bool) -> SSLMethod:
    """Move ``method`` to ``device``, in channels_last layout if asked, in training mode."""
    method.to(device)
    if channels_last:
        method.to(memory_format=torch.channels_last if spatial_dims == 2 else torch.channels_last_3d)
    return method.train()


def train_step(
    model: nn.Module, method: SSLMethod, x: Batch, generator: torch.Generator,
    opt: torch.optim.Optimizer, step: int, total_steps: int, channels_last: bool = False,
    amp: Precision | None = None,
) -> dict[str, torch.Tensor]:
    """One optimisation step: loss terms of ``model(x)`` (``model`` is ``method`` or its DDP wrapper),
    backward, optimiser step, then ``method.on_after_step``. Raises :class:`PretrainError` on a non-finite loss.
    A dict batch (a method's own dataset) is passed as it is: the method lays out the views it makes.
    ``amp`` (default fp32) runs the forward under autocast and the backward through its grad scaler."""
    amp = amp or Precision()
    if channels_last and isinstance(x, torch.Tensor):
        x = x.contiguous(memory_format=torch.channels_last if x.ndim == 4 else torch.channels_last_3d)
    with amp.autocast():
        out = model(x, generator)
    loss = out["loss"]
    if not torch.isfinite(loss):
        raise PretrainError(f"loss is {loss.item()} at step {step + 1}; lower --lr or check the data.")
    opt.zero_grad(set_to_none=True)
    amp.backward_step(loss, opt)
    method.on_after_step(step, total_steps)
    return out


def pretrain(cfg: PretrainConfig) -> PretrainResult:
    """Run (or resume) one pretraining run; see the module docstring for what it writes."""
    t_start = time.perf_counter()
    try:
        d = setup_distributed(cfg.device)
    except ValueError as err:
        raise PretrainError(str(err)) from err
    try:
        return _pretrain(cfg, d, t_start)
    finally:
        if d.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _pretrain(cfg: PretrainConfig, d: Dist, t_start: float) -> PretrainResult:
    if cfg.epochs <= 0 or cfg.batch_size <= 0:
        raise PretrainError(f"--epochs and --batch-size must be > 0, got {cfg.epochs} and {cfg.batch_size}")
    if cfg.max_steps is not None and cfg.max_steps <= 0:
        raise PretrainError(f"--max-steps must be > 0, got {cfg.max_steps}")
    cls = get_method(cfg.method)
    cfg = split_legacy_hparams(cfg, cls.data_option_keys)
    try:
        cls.parse_hparams(cfg.hparams)
    except ValueError as err:
        raise PretrainError(str(err)) from None
    try:
        json.dumps([cfg.hparams, cfg.model_kwargs, cfg.data_options])
    except TypeError as err:
        raise PretrainError(f"method hyper-parameters must be JSON values (they are recorded with the run): {err}") from err
    out = Path(cfg.out)
    if not cfg.resume and (out / "ckpt" / "latest.json").exists():
        raise PretrainError(f"{out} already holds a run; continue it with --resume or choose another --out.")
    arch_cfg = get_pretrained_cfg(split_model_name(cfg.arch)[0])
    spatial_dims = arch_cfg.spatial_dims
    if spatial_dims not in cls.spatial_dims:
        dims = "/".join(f"{n}D" for n in cls.spatial_dims)
        raise PretrainError(f"method {cfg.method} takes {dims} data but {cfg.arch} is a {spatial_dims}D "
                            f"architecture; choose a matching --arch.")
    if d.world > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // d.world))

    # data
    ct_kwargs: dict[str, Any] = {}
    if spatial_dims == 3 and _is_nifti(cfg):
        ct_kwargs = {"spacing": cfg.spacing, "samples_per_volume": cfg.samples_per_volume}
    in_chans = int(cfg.model_kwargs.get("in_chans", arch_cfg.in_chans))
    spec = DataSpec(data=cfg.data, data_kind=cfg.data_kind, img_size=cfg.img_size, in_chans=in_chans,
                    workers=cfg.workers, seed=cfg.seed, options=dict(cfg.data_options))
    if cfg.data_options and not cls.data_option_keys:
        raise PretrainError(f"method {cfg.method} takes no --data-option (got {sorted(cfg.data_options)})")
    dataset = cls.build_dataset(spec)
    if dataset is None:
        dataset = open_dataset(
            cfg.data, img_size=cfg.img_size, in_chans=in_chans,
            spatial_dims=spatial_dims, cube_size=cfg.cube_size, kind=cfg.data_kind, workers=max(1, cfg.workers),
            seed=cfg.seed, **ct_kwargs,
        )
    sampler = DistributedSampler(dataset, num_replicas=d.world, rank=d.rank, shuffle=True, seed=cfg.seed,
                                 drop_last=True)
    steps_per_epoch = len(sampler) // cfg.batch_size
    if steps_per_epoch == 0:
        raise PretrainError(f"{len(dataset)} samples give no full batch of {cfg.batch_size} per process "
                            f"({d.world} process(es)); lower --batch-size or add data.")
    total_steps = cfg.epochs * steps_per_epoch
    stop_at = min(total_steps, cfg.max_steps) if cfg.max_steps is not None else total_steps

    # model, optimiser, schedule: identical initialisation on every rank
    torch.manual_seed(cfg.seed)
    method: SSLMethod = cls(cfg.arch, model_kwargs=cfg.model_kwargs, **cfg.hparams)
    if cfg.init_from:
        _init_backbone(method, cfg.init_from, cfg.bn_only)
    elif cfg.bn_only:
        raise PretrainError("--bn-only needs --init-from (a backbone to keep frozen apart from its norms)")
    # channels_last is faster on CPU for every method measured (2D and 3D; see README "Pretraining")
    channels_last = True if cfg.channels_last is None else cfg.channels_last
    prepare_method(method, d.device, spatial_dims, channels_last)
    try:
        amp = make_precision(cfg.precision, d.device)
    except PrecisionError as err:
        raise PretrainError(str(err)) from err
    opt, opt_info = build_optimizer(cfg, method)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine_lambda(total_steps, cfg.warmup_steps))
    gen = torch.Generator().manual_seed(_derive_seed("augment", cfg.seed, d.rank))
    torch.manual_seed(_derive_seed("torch", cfg.seed, d.rank))

    step = 0
    if cfg.resume:
        meta, tensors = load_checkpoint(out)
        step = restore(meta, tensors, cfg, method, opt, sched, gen, d, amp)
        _logger.info("resumed %s at step %d of %d", out, step, total_steps)
    model: nn.Module = method
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        with warnings.catch_warnings():
            # buffers (queues, BN statistics) stay rank-local: a queue is refilled identically on every
            # rank, and broadcasting a 65,536-key queue at every step would cost more than the step
            warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
            model = DDP(method, device_ids=[d.local_rank] if d.device.type == "cuda" else None,
                        broadcast_buffers=False,
                        find_unused_parameters=bool(getattr(method, "ddp_find_unused_parameters", False)))

    log_path = out / "log.jsonl"
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        if cfg.resume and log_path.exists():  # drop lines written after the checkpoint
            lines = [ln for ln in log_path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
            log_path.write_text("".join(ln + "\n" for ln in lines))
        elif not cfg.resume:
            log_path.write_text("")
    run_info = {
        "config": dataclasses.asdict(cfg), "optimizer": opt_info, "world_size": d.world,
        "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "dataset": _describe(dataset),
        "dataset_size": len(dataset), "torch": torch.__version__, "channels_last": channels_last,
        "threads": torch.get_num_threads(), "machine": cpu_info(),
        "precision": amp.record(),
    }
    if d.main:
        atomic_write_json(out / "run.json", run_info)
        _logger.info("pretraining %s on %s: %s, %d steps/epoch x %d epochs, %d process(es)", cfg.method, cfg.arch,
                     _describe(dataset), steps_per_epoch, cfg.epochs, d.world)

    losses: list[float] = []
    speeds: list[float] = []
    bar = None
    if d.main and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=stop_at, initial=step, desc=f"{cfg.method}/{cfg.arch}", unit="step", dynamic_ncols=True)
    global_batch = cfg.batch_size * d.world
    last_ckpt = step
    log_fh = open(log_path, "a") if d.main else None  # noqa: SIM115 - closed in finally
    try:
        while step < stop_at:
            epoch, skip = divmod(step, steps_per_epoch)
            sampler.set_epoch(epoch)
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)
            batches = _SkipBatches(BatchSampler(sampler, cfg.batch_size, drop_last=True), skip)
            loader = DataLoader(dataset, batch_sampler=batches, num_workers=cfg.workers, collate_fn=_collate,
                                pin_memory=d.device.type == "cuda")
            t_data = time.perf_counter()
            for x in loader:
                t0 = time.perf_counter()
                lr = opt.param_groups[0]["lr"]
                out_terms = train_step(model, method, _to_device(x, d.device), gen, opt, step,
                                       total_steps, channels_last, amp)
                sched.step()
                step += 1
                names = sorted(k for k, v in out_terms.items() if isinstance(v, torch.Tensor) and v.numel() == 1)
                values = all_mean(torch.stack([out_terms[k].detach().float().reshape(()) for k in names]), d)
                t1 = time.perf_counter()
                speed = global_batch / (t1 - t_data)
                terms = dict(zip(names, values.tolist(), strict=True))
                losses.append(terms["loss"])
                speeds.append(speed)
                if log_fh is not None:
                    rec = {"step": step, "epoch": epoch, "lr": lr, **terms, "images_per_s": round(speed, 3),
                           "step_time_s": round(t1 - t0, 4), "data_time_s": round(t0 - t_data, 4)}
                    log_fh.write(json.dumps(rec) + "\n")
                    log_fh.flush()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{terms['loss']:.4f}", img_s=f"{speed:.1f}")
                epoch_end = step % steps_per_epoch == 0
                if (cfg.ckpt_every > 0 and step % cfg.ckpt_every == 0) or epoch_end or step == stop_at:
                    save_checkpoint(out, step, method, opt, sched, gen, d, cfg, cfg.keep_checkpoints, amp)
                    last_ckpt = step
                if step >= stop_at:
                    break
                t_data = time.perf_counter()
        if last_ckpt != step:
            save_checkpoint(out, step, method, opt, sched, gen, d, cfg, cfg.keep_checkpoints, amp)
    finally:
        if bar is not None:
            bar.close()
        if log_fh is not None:
            log_fh.close()

    wall = time.perf_counter() - t_start
    steady = speeds[1:] or speeds
    summary = {
        "steps": step,
        "final_loss": round(statistics.fmean(losses[-20:]), 6) if losses else None,
        "images_per_s": round(statistics.median(steady), 3) if steady else None,
        "world_size": d.world,
        "wall_time_s": round(wall, 2),
    }
    # a checksum of the trained parameters on every rank: DDP keeps them identical
    checksum = torch.stack([p.detach().double().abs().sum() for p in method.parameters()]).sum().reshape(1)
    if d.world > 1:
        sums = [torch.zeros_like(checksum) for _ in range(d.world)]
        dist.all_gather(sums, checksum)
        checksum = torch.cat(sums)
    summary["rank_param_checksums"] = checksum.tolist()
    weights = cfg_path = None
    if d.main:
        weights, cfg_path, problems = _export(out, method, cfg, dataset, spatial_dims, summary, total_steps)
        run_info.update(summary=summary, registry_problems=problems, finished=step >= total_steps,
                        network=method.arch, arch_kwargs=method.export_kwargs)
        atomic_write_json(out / "run.json", run_info)
        _logger.info("done: step %d of %d, %.1f images/s, %.0f s; exported %s", step, total_steps,
                     summary["images_per_s"] or 0.0, wall, weights)
    if d.world > 1:
        dist.barrier()
    return PretrainResult(out=out, steps=step, total_steps=total_steps, losses=losses, weights=weights,
                          pretrained_cfg=cfg_path, images_per_s=summary["images_per_s"] or 0.0, wall_time_s=wall)


def _is_nifti(cfg: PretrainConfig) -> bool:
    if cfg.data_kind not in ("auto", "nifti"):
        return False
    p = Path(cfg.data)
    return p.name.endswith((".nii", ".nii.gz")) or (p.is_dir() and any(
        f.name.endswith((".nii", ".nii.gz")) for f in p.iterdir()))


def _describe(dataset: Dataset) -> str:
    describe = getattr(dataset, "describe", None)
    return describe() if describe else f"{type(dataset).__name__} ({len(dataset)} samples)"  # type: ignore[arg-type]
