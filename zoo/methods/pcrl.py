"""PCRL: Preservational Contrastive Representation Learning (Zhou et al., ICCV 2021), 2D and 3D.

Built from the paper and the facts about the official code (``Luchixiang/PCRL``) in
``../shared/docs/upstream.md``. One training step, for a batch of images or cubes:

1. Two views per sample (2D: random resized crop 0.2-1, rotation +-10 deg, h-flip, grayscale p .2,
   Gaussian blur p .5, colour jitter .4 x 4, ImageNet normalisation, Cutout 3 x 32 px at 224 px;
   3D: two crops with IoU > 0.25, torchio-style flip + affine + blur, local pixel shuffling p .5,
   in-/out-painting p .9 (in-painting .2)). Each view also gets a random flip/rot90 *code*
   (2D: flip H, flip W, one-hot rot90 k -> 6 dims; 3D: flips on 3 axes + one-hot k -> 7 dims).
2. The momentum encoder (EMA of the student, ``m = 0.999``, no gradients) encodes view 2; the
   student encodes view 1. Projection ``GAP -> Linear(C, 128) -> ReLU -> Linear(128, 128)``.
3. Transformation-conditioned attention: ``sigmoid(fc2(relu(fc1(code))))`` (code -> 256 -> C)
   multiplies, channel-wise, the deepest map of the student (code of view 1) and of the momentum
   encoder (code of view 2), so the decoder is told which flip/rotation to produce.
4. Decoder passes: student-only, and cross-model mixup (every encoder map
   ``a * student + (1 - a) * momentum``, ``a ~ Beta(1, 1)``, ``a = max(a, 1 - a)``).
5. Input mixup (``lam ~ Beta(1, 1)``, ``max(lam, 1 - lam)``, one permutation of the batch) of both
   views; the mixed view 1 goes through the student (no attention), the mixed view 2 through the
   momentum encoder, and both decoder passes are made again with a new ``a``.
6. NCE-style contrastive terms against a memory queue (K = 16384, T = 0.2): (q, k), (mixed q,
   mixed k) and (mixed q, mix of k); each call scores then enqueues its keys, as upstream.
   ``loss_contrast`` is their mean; ``loss_recon`` is the mean of the four MSE terms (student,
   mixed input, cross-model, mixed + cross-model); ``loss = loss_contrast + loss_recon``.

Deviations from the official code, and why:

- **Reconstruction targets** (``recon_target="clean"``, the default). Upstream, the student and
  cross-model outputs are regressed onto the *augmented input* (colour jitter, blur, Cutout holes,
  in 3D the shuffled and painted voxels) flipped/rotated by the code, while the mixed terms use the
  un-augmented crop *before* the rotation and h-flip, i.e. a target not aligned with the input.
  Here every target is the clean view with the input's geometry (crop, rotation, flip; 3D: crop,
  flip, affine) and without its photometric / occlusion corruptions, flipped/rotated by the code
  where upstream applies the code. This is what the paper describes (preserving the information of
  the image, not of the noise) and gives every term an aligned target.
  ``recon_target="official"`` reproduces upstream's targets exactly.
- **Shuffle-BN**: in one process it changes nothing (batch statistics do not depend on the order
  of the batch) and is skipped; under DDP the momentum encoder runs through
  :func:`~zoo.methods._common.shuffle_bn_forward`, which shuffles across ranks as MoCo does.
- **Views are made here, on tensors**, from the batch the loader gives (upstream: PIL / torchio in
  the data loader). Resampling is done once per view (crop + rotation + flip composed), and the
  pixel sizes of the 2D recipe (blur sigma, Cutout length) are scaled by ``img_size / 224``. In 3D,
  upstream's pairs are cut from the whole resampled volume (sizes 32-112 voxels, IoU > 0.25,
  resized to 64 x 64 x 32); here both crops are sub-boxes (edge fraction U(0.5, 1)) of the cube the
  loader gives, resized to the cube's size; a loader that yields pairs ``(B, 2, 1, X, Y, Z)`` (e.g.
  ``CTCubeDataset(pairs=True)``) has its two cubes used as the two crops.
- **Queue initialisation**: random unit vectors (:class:`~zoo.methods._common.FeatureQueue`)
  instead of uniform in ``+-1/sqrt(dim/3)``; both have norm ~1 and are overwritten after
  ``K / (3 B)`` steps.
- **The NCE constant** ``Z`` is fixed from the first batch, as upstream (``mean(exp(s/T)) *
  n_data``; averaged over ranks under DDP). Upstream's ``n_data`` is the number of batches per epoch;
  the loss depends on it only through the ``1e-5`` epsilon (``Z`` and the noise prior scale
  together), so ``nce_n_data`` defaults to 1226 (78,467 images / batch 64).
- The momentum update covers the encoder and projection head only: the momentum model's decoder
  and attention exist upstream but are never used, so averaging them changes nothing.
- Mixed precision (apex O1 upstream) is left to the training loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data import augment as aug2d
from ..data import augment3d as aug3d
from ..meta.registry import get_pretrained_cfg
from ._common import (
    FeatureQueue,
    is_distributed,
    momentum_copy,
    momentum_update_,
    projection_mlp,
    shuffle_bn_forward,
)
from ._unet import build_unet, decode, encode, encoder_copy, export_unet, head_channels, train_network
from .base import SSLMethod
from .losses import fp32_similarity

__all__ = ["PCRL", "PCRLViews", "nce_loss"]

_REF_SIZE = 224  # the 2D recipe's pixel sizes refer to 224-px images


@dataclass
class PCRLViews:
    """The two views of a batch: inputs, clean targets (for the mixed terms), code-transformed
    targets (for the student / cross-model terms) and the flip/rot90 codes."""

    x1: torch.Tensor
    x2: torch.Tensor
    gt1: torch.Tensor
    gt2: torch.Tensor
    target1: torch.Tensor
    target2: torch.Tensor
    code1: torch.Tensor
    code2: torch.Tensor


def nce_loss(scores: torch.Tensor, n_data: int, eps: float = 1e-5) -> torch.Tensor:
    """The NCE criterion of CMC / PCRL on normalised scores ``(B, 1 + K)`` (positive first).

    ``-(sum log P(D=1|pos) + sum log P(D=0|neg)) / B`` with a uniform noise prior ``1 / n_data``.
    """
    b, m = scores.shape[0], scores.shape[1] - 1
    noise = m / float(n_data)
    pos = scores[:, 0]
    log_d1 = torch.log(pos / (pos + noise + eps))
    log_d0 = torch.log(noise / (scores[:, 1:] + noise + eps))
    return -(log_d1.sum() + log_d0.sum()) / b


def _mix(a: list[torch.Tensor], b: list[torch.Tensor], alpha: float) -> list[torch.Tensor]:
    return [alpha * u + (1.0 - alpha) * v for u, v in zip(a, b, strict=True)]


def _beta11_max(generator: torch.Generator | None) -> float:
    """``a ~ Beta(1, 1)`` (= U(0, 1)), returned as ``max(a, 1 - a)``."""
    a = float(torch.rand((), generator=generator))
    return max(a, 1.0 - a)


class PCRL(SSLMethod):
    """PCRL on a U-Net: ``unet_resnet18`` (2D) or ``unet3d_seg`` / ``unet3d_small_seg`` (3D).

    The encoder networks ``resnet18`` / ``unet3d`` / ``unet3d_small`` are accepted too: their U-Net is
    trained and :meth:`export_state_dict` returns the encoder only, under that network's keys.

    Args:
        arch: the architecture (see above).
        dim: projection dimension (128).
        queue_size: memory queue length K (16384).
        temperature: NCE temperature (0.2).
        momentum: EMA momentum of the key encoder (0.999).
        nce_n_data: ``n_data`` of the NCE noise prior (see the module notes).
        recon_target: ``"clean"`` (default) or ``"official"`` (see the module notes).
        contrast_weight: weight of the three NCE terms (1); 0 gives the restoration-only ablation.
        recon_weight: weight of the four reconstruction terms (1); 0 gives the contrastive-only ablation.
        model_kwargs: extra architecture arguments for ``zoo.create_model`` (e.g. ``width``, ``norm``).
    """

    name: ClassVar[str] = "pcrl"
    spatial_dims: ClassVar[tuple[int, ...]] = (2, 3)
    # upstream: SGD lr 1e-3, momentum 0.9, weight decay 1e-4, cosine schedule, 240 epochs, batch 64
    recipe: ClassVar[dict[str, Any]] = {"optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4}

    nce_z: torch.Tensor

    def __init__(
        self,
        arch: str = "unet_resnet18",
        dim: int = 128,
        queue_size: int = 16384,
        temperature: float = 0.2,
        momentum: float = 0.999,
        nce_n_data: int = 1226,
        recon_target: str = "clean",
        contrast_weight: float = 1.0,
        recon_weight: float = 1.0,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            arch, dim=dim, queue_size=queue_size, temperature=temperature, momentum=momentum,
            nce_n_data=nce_n_data, recon_target=recon_target, contrast_weight=contrast_weight,
            recon_weight=recon_weight, model_kwargs=dict(model_kwargs or {}),
        )
        if contrast_weight < 0 or recon_weight < 0 or contrast_weight + recon_weight == 0:
            raise ValueError(
                f"contrast_weight and recon_weight must be >= 0 and not both 0, got {contrast_weight}, {recon_weight}"
            )
        if recon_target not in ("clean", "official"):
            raise ValueError(f"recon_target must be 'clean' or 'official', got {recon_target!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if temperature <= 0 or dim <= 0 or queue_size <= 0 or nce_n_data <= 0:
            raise ValueError("temperature, dim, queue_size and nce_n_data must all be > 0")
        kwargs = self.model_kwargs
        self.net = build_unet(self.arch, "PCRL", skip=True, **kwargs)
        if self.net.spatial_dims == 3 and "out_act" not in kwargs:
            self.net.out_act = "sigmoid"  # upstream's 3D output is a sigmoid
        self.dims = self.net.spatial_dims
        self.temperature = temperature
        self.momentum = momentum
        self.nce_n_data = nce_n_data
        self.recon_target = recon_target
        self.contrast_weight = contrast_weight
        self.recon_weight = recon_weight
        intensity = get_pretrained_cfg(self._train_arch()).intensity
        self._mean_std = (intensity.mean, intensity.std) if intensity.kind == "mean_std" else None

        c = head_channels(self.net)
        code_dim = 6 if self.dims == 2 else 7
        self.proj = projection_mlp(c, dim, dim)
        self.attention = nn.Sequential(nn.Linear(code_dim, 256), nn.ReLU(inplace=True), nn.Linear(256, c), nn.Sigmoid())
        self.ema = encoder_copy(self.net)
        # 0 until the first training step copies the student into the momentum encoder (upstream's
        # ``moment_update(model, model_ema, 0)``), so weights loaded after construction
        # (``--init-from``) reach both; it also keeps the copy's keys distinct from the exported ones.
        self.ema.register_buffer("synced", torch.tensor(0, dtype=torch.long))
        self.ema_proj = momentum_copy(self.proj)
        self.queue = FeatureQueue(dim, queue_size)
        self.register_buffer("nce_z", torch.tensor(-1.0))
        # the student's encoder modules, in the order of the momentum copy (not registered twice)
        self._online_encoder = [getattr(self.net, name) for name in self.ema._modules]

    # --- helpers --------------------------------------------------------------------------------
    def _train_arch(self) -> str:
        return train_network(self.arch)

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x if self._mean_std is None else aug2d.normalize(x, *self._mean_std)

    def _check_batch(self, batch: torch.Tensor) -> None:
        if not isinstance(batch, torch.Tensor) or not batch.is_floating_point():
            raise ValueError(f"PCRL expects a float tensor batch in [0, 1], got {type(batch).__name__}")
        pairs = self.dims == 3 and batch.ndim == 6 and batch.shape[1] == 2
        want = self.dims + 2
        if batch.ndim != want and not pairs:
            layout = "(B, C, H, W)" if self.dims == 2 else "(B, 1, X, Y, Z) or pairs (B, 2, 1, X, Y, Z)"
            raise ValueError(f"PCRL ({self.arch}) expects a batch {layout}, got shape {tuple(batch.shape)}")
        if batch.shape[0] < 2:
            raise ValueError("PCRL needs a batch of at least 2 samples (batch norm, mixup); raise --batch-size")
        spatial = batch.shape[-self.dims:]
        multiple = 32 if self.dims == 2 else 8
        if spatial[0] != spatial[1] or any(s % multiple for s in spatial):
            raise ValueError(
                f"PCRL needs the first two spatial sizes equal (for rot90) and every size divisible by "
                f"{multiple}, got {tuple(spatial)}; set the image / cube size accordingly"
            )

    # --- views ----------------------------------------------------------------------------------
    @aug2d.no_autocast
    def make_views(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> PCRLViews:
        """The two augmented views of ``batch`` with their targets and transformation codes."""
        self._check_batch(batch)
        g = generator if generator is not None else torch.default_generator
        inputs, clean, crop_only = self._views_2d(batch, g) if self.dims == 2 else self._views_3d(batch, g)
        base = inputs if self.recon_target == "official" else clean
        gt = crop_only if self.recon_target == "official" else clean
        flip_dims = tuple(range(2, 2 + self.dims))
        target, flags = aug2d.random_flip(base, 0.5, g, dims=flip_dims)
        target, k = aug2d.random_rot90(target, g, dims=(2, 3))
        code = torch.cat([flags.float(), F.one_hot(k, 4).float()], dim=1).to(batch.dtype)
        n = inputs.shape[0] // 2
        return PCRLViews(inputs[:n], inputs[n:], gt[:n], gt[n:], target[:n], target[n:], code[:n], code[n:])

    def _views_2d(self, x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        size = x.shape[-1]
        f = size / _REF_SIZE
        both = torch.cat([x, x])
        g_crop = None
        if self.recon_target == "official":  # replays the same boxes for the crop-only targets
            g_crop = torch.Generator()
            g_crop.set_state(g.get_state())
        geo = aug2d.random_resized_crop(both, size, (0.2, 1.0), generator=g, hflip_p=0.5, degrees=10.0)
        crop_only = None
        if g_crop is not None:
            crop_only = self._normalize(aug2d.random_resized_crop(both, size, (0.2, 1.0), generator=g_crop))
        y = aug2d.random_grayscale(geo, 0.2, g)
        y = aug2d.gaussian_blur(y, (0.1 * f, 2.0 * f), 0.5, g)
        y = aug2d.color_jitter(y, 0.4, 0.4, 0.4, 0.4, p=1.0, generator=g)
        y = aug2d.cutout(self._normalize(y), 3, max(1, round(32 * f)), g)
        return y, self._normalize(geo), crop_only

    def _views_3d(self, x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if x.ndim == 6:  # the loader's pairs of overlapping cubes
            n = x.shape[0]
            crops = torch.cat([x[:, 0], x[:, 1]])
            source, index = crops, torch.arange(2 * n)
            center, half = torch.zeros(2 * n, 3), torch.ones(2 * n, 3)
        else:
            n = x.shape[0]
            c1, h1, c2, h2 = aug3d.overlapping_boxes(n, (0.5, 1.0), 0.25, generator=g)
            source, index = x, torch.arange(n).repeat(2)
            center, half = torch.cat([c1, c2]), torch.cat([h1, h2])
        size = tuple(source.shape[2:])
        linear = aug3d.random_flip_affine(2 * n, generator=g)
        geo = aug3d.sample_views(source, center, half, size, linear, fill="min", index=index)
        crop_only = None
        if self.recon_target == "official":
            crop_only = aug3d.sample_views(source, center, half, size, None, index=index)
        y = aug3d.gaussian_blur3d(geo, 2.0 * torch.rand((2 * n, 3), generator=g))
        y = aug3d.local_pixel_shuffle(y, 0.5, generator=g)
        paint = (torch.rand(n, generator=g) < 0.9).repeat(2)  # one decision per pair, as upstream
        inpaint = (torch.rand(n, generator=g) < 0.2).repeat(2)
        y = y.clone()
        for chosen, fn in ((paint & inpaint, aug3d.in_painting), (paint & ~inpaint, aug3d.out_painting)):
            idx = chosen.nonzero().flatten()
            if idx.numel():
                y[idx.to(y.device)] = fn(y[idx.to(y.device)], generator=g)
        return y, geo, crop_only

    # --- networks ---------------------------------------------------------------------------------
    def attend(self, code: torch.Tensor) -> torch.Tensor:
        """Channel attention ``(B, C, 1, ...)`` from a flip/rot90 code ``(B, 6 | 7)``."""
        return self.attention(code).view(code.shape[0], -1, *([1] * self.dims))

    def student(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Projection (un-normalised) and encoder maps of the student."""
        feats = encode(self.net, x)
        return self.proj(feats[-1].flatten(2).mean(-1)), feats

    @torch.no_grad()
    def momentum_encoder(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Projection and encoder maps of the momentum encoder (shuffle-BN across ranks under DDP)."""
        if not is_distributed():
            feats = encode(self.ema, x)
            return self.ema_proj(feats[-1].flatten(2).mean(-1)), feats
        shapes: list[torch.Size] = []

        def packed(inp: torch.Tensor) -> torch.Tensor:
            maps = encode(self.ema, inp)
            shapes[:] = [m.shape[1:] for m in maps]
            k = self.ema_proj(maps[-1].flatten(2).mean(-1))
            return torch.cat([k] + [m.flatten(1) for m in maps], dim=1)

        flat = shuffle_bn_forward(packed, x, generator)
        sizes = [self.queue.queue.shape[1]] + [math.prod(s) for s in shapes]
        parts = flat.split(sizes, dim=1)
        return parts[0], [p.reshape(-1, *s) for p, s in zip(parts[1:], shapes, strict=True)]

    def reconstruct(
        self, feats_q: list[torch.Tensor], feats_k: list[torch.Tensor], alpha: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(student-only output, cross-model mixup output) of the decoder."""
        return decode(self.net, feats_q), decode(self.net, _mix(feats_q, feats_k, alpha))

    @fp32_similarity
    def _scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Normalised NCE scores ``exp(s / T) / Z`` of ``q`` against ``k`` and the queue; then enqueue ``k``."""
        k = k.detach()
        pos = (q * k).sum(dim=1, keepdim=True)
        neg = q @ self.queue.queue.clone().t()
        out = torch.exp(torch.cat([pos, neg], dim=1) / self.temperature)
        if float(self.nce_z) < 0:
            z = out.detach().mean() * self.nce_n_data
            if is_distributed():
                torch.distributed.all_reduce(z)
                z /= torch.distributed.get_world_size()
            self.nce_z.fill_(float(z))
        if self.training:
            self.queue.enqueue(k)
        return out / self.nce_z

    # --- the objective ----------------------------------------------------------------------------
    def forward(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Loss terms of one batch (``batch`` in [0, 1]); ``out["loss"]`` is back-propagated."""
        g = generator if generator is not None else torch.default_generator
        v = self.make_views(batch, g)
        return self.losses(v, g)

    def losses(self, v: PCRLViews, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The PCRL terms from prepared views."""
        g = generator if generator is not None else torch.default_generator
        if self.training and not bool(self.ema.synced):
            self._sync_momentum()
        # ordinary branch
        alpha1 = _beta11_max(g)
        k, feats_k = self.momentum_encoder(v.x2, g)
        q, feats_q = self.student(v.x1)
        att1, att2 = self.attend(v.code1), self.attend(v.code2)
        feats_q = feats_q[:-1] + [feats_q[-1] * att1]
        feats_k = feats_k[:-1] + [feats_k[-1] * att2]
        out_student, out_cross = self.reconstruct(feats_q, feats_k, alpha1)
        s_ord = self._scores(F.normalize(q, dim=1), F.normalize(k, dim=1))
        # input mixup branch (one permutation and lambda for inputs, targets and keys)
        lam = _beta11_max(g)
        perm = torch.randperm(v.x1.shape[0], generator=g).to(v.x1.device)

        def mix(t: torch.Tensor) -> torch.Tensor:
            return lam * t + (1.0 - lam) * t[perm]

        mixed_x1, mixed_x2, mixed_gt1, mixed_gt2, mixed_k = mix(v.x1), mix(v.x2), mix(v.gt1), mix(v.gt2), mix(k)
        alpha2 = _beta11_max(g)
        mk, feats_mk = self.momentum_encoder(mixed_x2, g)
        mq, feats_mq = self.student(mixed_x1)
        out_mixed, out_mixed_cross = self.reconstruct(feats_mq, feats_mk, alpha2)
        mq_n = F.normalize(mq, dim=1)
        s_mix = self._scores(mq_n, F.normalize(mk, dim=1))
        s_cross = self._scores(mq_n, F.normalize(mixed_k, dim=1))

        nce = [nce_loss(s, self.nce_n_data) for s in (s_ord, s_mix, s_cross)]
        mse = [
            F.mse_loss(out_student, v.target1),
            F.mse_loss(out_mixed, mixed_gt1),
            F.mse_loss(out_cross, alpha1 * v.target1 + (1 - alpha1) * v.target2),
            F.mse_loss(out_mixed_cross, alpha2 * mixed_gt1 + (1 - alpha2) * mixed_gt2),
        ]
        loss_contrast = sum(nce) / 3.0
        loss_recon = sum(mse) / 4.0
        return {
            "loss": self.contrast_weight * loss_contrast + self.recon_weight * loss_recon,
            "loss_contrast": loss_contrast,
            "loss_recon": loss_recon,
            "nce_ordinary": nce[0],
            "nce_mixed": nce[1],
            "nce_cross": nce[2],
            "mse_student": mse[0],
            "mse_mixed": mse[1],
            "mse_cross": mse[2],
            "mse_mixed_cross": mse[3],
            "pos_prob": s_ord[:, 0].detach().mean(),
        }

    @torch.no_grad()
    def _momentum_update(self, m: float) -> None:
        momentum_update_(nn.ModuleList(self._online_encoder), nn.ModuleList(self.ema.children()), m)
        momentum_update_(self.proj, self.ema_proj, m)

    @torch.no_grad()
    def _sync_momentum(self) -> None:
        """Copy the student's encoder and projection into the momentum encoder."""
        self._momentum_update(0.0)
        self.ema.synced.fill_(1)

    @torch.no_grad()
    def on_after_step(self, step: int, total_steps: int) -> None:
        """EMA of the momentum encoder and projection: ``ema = m * ema + (1 - m) * student``."""
        self._momentum_update(self.momentum)

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """The U-Net (or, for an encoder arch, its encoder) under the keys of ``create_model(arch)``."""
        return export_unet(self.net, self.arch)
