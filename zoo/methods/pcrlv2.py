"""PCRLv2 (Zhou et al., IEEE TPAMI 2023): multi-scale SimSiam-style learning with reconstruction, 2D and 3D.

Built from the paper and the facts about the official code (``RL4M/PCRLv2``) in
``../shared/docs/upstream.md``. One step, for a batch of images or cubes:

- Two global views (2D: random resized crop 0.3-1 + rotation +-10 deg + h-flip, then grayscale p .2,
  blur p .5, colour jitter .4 x 4, normalisation and Cutout 3 x 32 px at 224 px; 3D: two crops with
  IoU > 0.3, torchio-style flip + affine, then blur, noise, gamma, patch swap (8, 4, 4) x 100 and
  z-normalisation) and six local views (2D: crops 0.05-0.3 resized to 96 px at 224; 3D: small
  crops around the global ones resized to 16^3 for 64 x 64 x 32 cubes; same corruptions without
  Cutout / swap). The reconstruction target is the clean first global view (its geometry, none of
  its intensity corruptions; 2D normalised, 3D in [0, 1]).
- Encoder -> a decoder *without* skip connections (2D: five nearest-x2 + 2 x Conv-BN-ReLU blocks,
  512 -> 256 -> 128 -> 64 -> 32 -> 16, then a 3x3 conv to 3 channels; 3D: the ``noskip`` decoder of
  :class:`~zoo.models.unet3d.UNet3D` and its sigmoid output). At every decoder level: ``BN1d`` of the
  global-average-pooled map (the projection), a predictor ``Linear(C, 2C)-BN-ReLU-Linear(2C, C)``,
  and a deep-supervision head (2D: Conv3x3-BN-ReLU-Conv1x1 -> 3 channels, bilinear up to full size;
  3D: Conv3x3x3 -> BN -> sigmoid, trilinear up).
- Losses: ``mse_recon`` (final output vs target), ``loss_global``: symmetric negative cosine between
  predictor and stop-gradient projection of the two global views at one random level,
  ``loss_local``: the same between each global and each local view (a random level each, averaged
  over the 2 x 6 pairs), ``loss_deep_sup``: ``beta * MSE`` of the first view's deep-supervision
  output at the global term's level, ``beta = 0.5 (1 + cos(pi * progress))`` (upstream: epoch / 240).
  ``loss`` is their sum.

Deviations from the official code, and why:

- **Views are made here, on tensors**, from the batch the loader gives; pixel sizes of the 2D recipe
  (blur sigma, Cutout length, the 96-px local size) are scaled by ``img_size / 224``. In 3D the
  global crops are sub-boxes (edge fraction U(0.5, 1), IoU > 0.3) of the given cube (or the loader's
  two cubes if it yields pairs) and the local crops are boxes of edge fraction U(0.125, 0.5) centred
  inside the union of the global boxes. Upstream's pre-processing meant to save such local crops but
  saves the two global crops again under the ``_local_`` name (``np.save(..., crop_window)``), so
  its 3D "local" views are the global crops; the paper's local crops are used here.
- Work whose result upstream never uses is skipped: the deep-supervision heads and the output head
  of the second global view and of the local views (they only update BN running statistics of those
  heads). The loss is unchanged.
- ImageNet initialisation of the 2D encoder (smp's default upstream) is not done here: the
  training loop's ``--init-from`` provides any starting weights.
- Mixed precision (apex O1 upstream) is left to the training loop.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data import augment as aug2d
from ..data import augment3d as aug3d
from ..meta.registry import get_pretrained_cfg
from ..models.builder import create_model
from ..models.resnet import ResNet
from ..models.unet2d import _DECODER_CHS, DecoderBlock
from ._unet import build_unet, encode, export_unet
from .base import SSLMethod
from .heads import prediction_mlp
from .losses import symmetric_cosine

__all__ = ["PCRLv2", "symmetric_cosine"]

_REF_SIZE = 224


class _LevelHeads(nn.Module):
    """Projection (BN of the pooled map), predictor and deep-supervision head of one decoder level."""

    def __init__(self, chs: int, dims: int, out_chans: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(chs)
        self.predictor = prediction_mlp(chs, 2 * chs)
        if dims == 2:
            self.deep_supervision = nn.Sequential(
                nn.Conv2d(chs, chs, 3, padding=1), nn.BatchNorm2d(chs), nn.ReLU(inplace=True),
                nn.Conv2d(chs, out_chans, 1),
            )
        else:
            self.deep_supervision = nn.Sequential(
                nn.Conv3d(chs, out_chans, 3, padding=1), nn.BatchNorm3d(out_chans), nn.Sigmoid()
            )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pro = self.bn(x.flatten(2).mean(-1))
        return pro, self.predictor(pro)


class PCRLv2(SSLMethod):
    """PCRLv2 on ``resnet18`` (2D, encoder exported) or ``unet3d_seg`` (3D, the encoder + skip-less
    decoder exported; ``unet3d`` exports the encoder only). In 3D the U-Net is built without skips
    (``decoder="noskip"``, what the method is) unless ``model_kwargs`` say otherwise.

    Args:
        arch: the architecture (see above).
        n_local: local views per sample (6).
        local_size: local view size in pixels / voxels (default: 96 px at 224 scaled to the image;
            3D: half the smallest cube edge rounded down to a multiple of 8, at least 8).
        input_znorm: z-normalise the 3D inputs as upstream's torchio pipeline does (targets stay in
            [0, 1]); the exported weights then expect z-scored cubes.
        model_kwargs: extra architecture arguments for ``zoo.create_model``.
    """

    name: ClassVar[str] = "pcrlv2"
    spatial_dims: ClassVar[tuple[int, ...]] = (2, 3)
    # upstream: SGD lr 1e-2 (momentum 0.9, weight decay 1e-4), cosine schedule, 240 epochs, batch 64
    recipe: ClassVar[dict[str, Any]] = {"optimizer": "sgd", "lr": 1e-2, "momentum": 0.9, "weight_decay": 1e-4}
    # only one level's deep-supervision head is in each step's loss
    ddp_find_unused_parameters: ClassVar[bool] = True

    progress: torch.Tensor

    def __init__(
        self,
        arch: str = "resnet18",
        n_local: int = 6,
        local_size: int | None = None,
        input_znorm: bool = True,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(arch, n_local=n_local, local_size=local_size, input_znorm=input_znorm,
                         model_kwargs=dict(model_kwargs or {}))
        if n_local < 0:
            raise ValueError(f"n_local must be >= 0, got {n_local}")
        kwargs = self.model_kwargs
        if get_pretrained_cfg(self.arch).spatial_dims == 2:
            self.dims = 2
            self.net = create_model(self.arch, num_classes=0, **kwargs)
            if not isinstance(self.net, ResNet):
                raise ValueError(f"PCRLv2 trains a 2D ResNet encoder (e.g. resnet18) or a 3D U-Net without skips "
                                 f"(unet3d_seg, unet3d); {arch!r} built a {type(self.net).__name__}")
            chs = [self.net.feature_info[-1]["num_chs"], *_DECODER_CHS]
            self.decoder = nn.ModuleList(DecoderBlock(i, 0, o) for i, o in zip(chs[:-1], chs[1:], strict=True))
            self.segmentation_head = nn.Conv2d(chs[-1], 3, kernel_size=3, padding=1)
            level_chs, out_chans = chs[1:], 3
            intensity = get_pretrained_cfg(self.arch).intensity
            self._mean_std = (intensity.mean, intensity.std) if intensity.kind == "mean_std" else None
        else:
            self.net = build_unet(self.arch, "PCRLv2", (3,), skip=False, **kwargs)
            if "out_act" not in kwargs:
                self.net.out_act = "sigmoid"  # upstream's 3D output is a sigmoid
            self.dims = 3
            w = self.net.decoder_chs // 2
            level_chs, out_chans = [8 * w, 4 * w, 2 * w], 1
            self._mean_std = None
        self.heads = nn.ModuleList(_LevelHeads(c, self.dims, out_chans) for c in level_chs)
        self.n_local = n_local
        self.local_size = local_size
        self.input_znorm = input_znorm
        self.register_buffer("progress", torch.tensor(0.0))

    @classmethod
    def network_defaults(cls, network: str) -> dict[str, Any]:
        """3D: the decoder without skip connections, as upstream."""
        return {"decoder": "noskip"} if get_pretrained_cfg(network).spatial_dims == 3 else {}

    # --- views ----------------------------------------------------------------------------------
    def _check_batch(self, batch: torch.Tensor) -> None:
        if not isinstance(batch, torch.Tensor) or not batch.is_floating_point():
            raise ValueError(f"PCRLv2 expects a float tensor batch in [0, 1], got {type(batch).__name__}")
        pairs = self.dims == 3 and batch.ndim == 6 and batch.shape[1] == 2
        if batch.ndim != self.dims + 2 and not pairs:
            layout = "(B, C, H, W)" if self.dims == 2 else "(B, 1, X, Y, Z) or pairs (B, 2, 1, X, Y, Z)"
            raise ValueError(f"PCRLv2 ({self.arch}) expects a batch {layout}, got shape {tuple(batch.shape)}")
        if batch.shape[0] < 2:
            raise ValueError("PCRLv2 needs a batch of at least 2 samples (batch norm); raise --batch-size")
        multiple = 32 if self.dims == 2 else 8
        if any(s % multiple for s in batch.shape[-self.dims:]):
            raise ValueError(f"PCRLv2 needs every spatial size divisible by {multiple}, got {tuple(batch.shape[-self.dims:])}")

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x if self._mean_std is None else aug2d.normalize(x, *self._mean_std)

    def make_views(
        self, batch: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(global view 1, global view 2, target of view 1, local views (n_local * B, ...))``."""
        self._check_batch(batch)
        g = generator if generator is not None else torch.default_generator
        return self._views_2d(batch, g) if self.dims == 2 else self._views_3d(batch, g)

    def _photometric_2d(self, x: torch.Tensor, f: float, g: torch.Generator) -> torch.Tensor:
        x = aug2d.random_grayscale(x, 0.2, g)
        x = aug2d.gaussian_blur(x, (0.1 * f, 2.0 * f), 0.5, g)
        return self._normalize(aug2d.color_jitter(x, 0.4, 0.4, 0.4, 0.4, p=1.0, generator=g))

    def _views_2d(self, x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        n, size = x.shape[0], x.shape[-1]
        f = size / _REF_SIZE
        geo = aug2d.random_resized_crop(torch.cat([x, x]), size, (0.3, 1.0), generator=g, hflip_p=0.5, degrees=10.0)
        inputs = aug2d.cutout(self._photometric_2d(geo, f, g), 3, max(1, round(32 * f)), g)
        local_size = self.local_size or max(32, round(96 * f))
        local = x.new_zeros((0, x.shape[1], local_size, local_size))
        if self.n_local:
            local = aug2d.random_resized_crop(x.repeat(self.n_local, 1, 1, 1), local_size, (0.05, 0.3),
                                              generator=g, hflip_p=0.5, degrees=10.0)
            local = self._photometric_2d(local, f, g)
        return inputs[:n], inputs[n:], self._normalize(geo[:n]), local

    def _corrupt_3d(self, x: torch.Tensor, g: torch.Generator, swap: bool) -> torch.Tensor:
        x = aug3d.gaussian_blur3d(x, 2.0 * torch.rand((x.shape[0], 3), generator=g))
        x = aug3d.random_noise(x, (0.0, 0.25), generator=g)
        x = aug3d.random_gamma(x, (-0.3, 0.3), generator=g)
        if swap:
            x = aug3d.random_swap(x, (8, 4, 4), 100, generator=g)
        return aug3d.zscore(x) if self.input_znorm else x

    def _views_3d(self, x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        n = x.shape[0]
        if x.ndim == 6:  # the loader's pairs of overlapping cubes
            source = torch.cat([x[:, 0], x[:, 1]])
            index = torch.arange(2 * n)
            center, half = torch.zeros(2 * n, 3), torch.ones(2 * n, 3)
            lo, hi = -torch.ones(n, 3), torch.ones(n, 3)
        else:
            source = x
            c1, h1, c2, h2 = aug3d.overlapping_boxes(n, (0.5, 1.0), 0.3, generator=g)
            index = torch.arange(n).repeat(2)
            center, half = torch.cat([c1, c2]), torch.cat([h1, h2])
            lo, hi = torch.minimum(c1 - h1, c2 - h2), torch.maximum(c1 + h1, c2 + h2)
        size = tuple(source.shape[2:])
        geo = aug3d.sample_views(source, center, half, size, aug3d.random_flip_affine(2 * n, generator=g),
                                 fill="min", index=index)
        inputs = self._corrupt_3d(geo, g, swap=True)
        ls = self.local_size or max(8, (min(size) // 2) // 8 * 8)
        local = x.new_zeros((0, 1, ls, ls, ls))
        if self.n_local:
            lc, lh = aug3d.boxes_within(lo, hi, self.n_local, (0.125, 0.5), generator=g)
            local = aug3d.sample_views(source, lc, lh, (ls, ls, ls),
                                       aug3d.random_flip_affine(self.n_local * n, generator=g), fill="min",
                                       index=torch.arange(n).repeat(self.n_local))
            local = self._corrupt_3d(local, g, swap=False)
        return inputs[:n], inputs[n:], geo[:n], local

    # --- networks ---------------------------------------------------------------------------------
    def pyramid(
        self, x: torch.Tensor, full: bool
    ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor | None, list[torch.Tensor]]:
        """Per-level ``(projection, prediction)``; with ``full`` also the output and the
        deep-supervision outputs at the input's resolution."""
        feats = encode(self.net, x)
        if self.dims == 2:
            y, levels = feats[-1], []
            for block in self.decoder:
                y = block(y, None)
                levels.append(y)
        else:
            levels = self.net.forward_decoder(feats, all_levels=True)
        outs = [head(level) for head, level in zip(self.heads, levels, strict=True)]
        if not full:
            return outs, None, []
        if self.dims == 2:
            final = self.segmentation_head(levels[-1])
            mode = "bilinear"
        else:
            final = self.net.forward_head(levels[-1])
            mode = "trilinear"
        size = final.shape[2:]
        masks = [
            F.interpolate(head.deep_supervision(level), size=size, mode=mode, align_corners=False)
            if level.shape[2:] != size else head.deep_supervision(level)
            for head, level in zip(self.heads, levels, strict=True)
        ]
        return outs, final, masks

    def forward(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Loss terms of one batch (``batch`` in [0, 1]); ``out["loss"]`` is back-propagated."""
        g = generator if generator is not None else torch.default_generator
        x1, x2, target, local = self.make_views(batch, g)
        n = x1.shape[0]
        out1, final1, masks1 = self.pyramid(x1, full=True)
        out2, _, _ = self.pyramid(x2, full=False)
        levels = len(self.heads)

        def level(gen: torch.Generator) -> int:
            return int(torch.randint(0, levels, (), generator=gen))

        idx = level(g)
        loss_global = symmetric_cosine(out1[idx], out2[idx])
        loss_local = final1.new_zeros(())
        if self.n_local:
            out_l, _, _ = self.pyramid(local, full=False)
            for i in range(self.n_local):
                view = [(p[i * n:(i + 1) * n], q[i * n:(i + 1) * n]) for p, q in out_l]
                for out_g in (out1, out2):
                    j = level(g)
                    loss_local = loss_local + symmetric_cosine(out_g[j], view[j])
            loss_local = loss_local / (2 * self.n_local)
        mse_recon = F.mse_loss(final1, target)
        beta = 0.5 * (1.0 + math.cos(math.pi * float(self.progress)))
        loss_deep_sup = beta * F.mse_loss(masks1[idx], target)
        return {
            "loss": mse_recon + loss_global + loss_local + loss_deep_sup,
            "mse_recon": mse_recon,
            "loss_global": loss_global,
            "loss_local": loss_local,
            "loss_deep_sup": loss_deep_sup,
        }

    @torch.no_grad()
    def on_after_step(self, step: int, total_steps: int) -> None:
        """Advance the deep-supervision schedule (``progress = step / total_steps``)."""
        if total_steps > 0:
            self.progress.fill_(min(1.0, step / total_steps))

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """2D: the ResNet encoder; 3D: the U-Net (encoder + skip-less decoder), or its encoder for
        an encoder network; keys of ``create_model(arch)``."""
        if self.dims == 2:
            return {k: v.detach().clone().contiguous() for k, v in self.net.state_dict().items()}
        return export_unet(self.net, self.arch)

