"""Which U-Net holds an encoder network as its encoder (network names only; torch-free).

Reconstruction methods (PCRL, PCRLv2 3D, Models Genesis) train an encoder-decoder; asked for an
encoder network they train its U-Net and export the encoder under the encoder's keys.
"""

from __future__ import annotations

__all__ = ["ENCODER_UNETS", "DECODER_KWARGS", "unet_of", "encoder_of"]

# encoder network -> the U-Net whose encoder it is (same keys after dropping the decoder)
ENCODER_UNETS: dict[str, str] = {
    "resnet18": "unet_resnet18",
    "unet3d": "unet3d_seg",
    "unet3d_small": "unet3d_small_seg",
}

# network kwargs of a U-Net that its encoder network does not take
DECODER_KWARGS: tuple[str, ...] = ("decoder", "out_act", "num_classes")


def unet_of(network: str) -> str | None:
    """The U-Net whose encoder is ``network`` (``resnet18`` -> ``unet_resnet18``), or ``None``."""
    return ENCODER_UNETS.get(network)


def encoder_of(unet: str) -> str | None:
    """The encoder network of the U-Net ``unet`` (``unet3d_seg`` -> ``unet3d``), or ``None``."""
    return next((enc for enc, u in ENCODER_UNETS.items() if u == unet), None)
