"""Published numbers to compare zoo's results with, as data (from ``../shared/docs/anchors.md``).

Every anchor names its task (zoo's task on the same test split), protocol, input size and source.
Values are fractions in [0, 1]. Compare like with like: same split, same metric, and say the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Anchor", "ANCHORS", "SOURCES", "anchors_for"]

SOURCES: dict[str, str] = {
    "medmnist_v2": "Yang et al., MedMNIST v2, Scientific Data 10:41, 2023 (benchmark tables)",
    "medmnist_plus": "Doerrich et al., Rethinking model prototyping through the MedMNIST+ dataset collection, 2024",
    "kermany2018": "Kermany et al., Identifying medical diagnoses and treatable diseases by image-based deep "
    "learning, Cell 172(5), 2018",
    "r2unet": "Alom et al., Recurrent residual U-Net (R2U-Net), 2018 (U-Net re-run and R2U-Net)",
    "iternet": "Li et al., IterNet, WACV 2020",
    "saunet": "Guo et al., SA-UNet, ICPR 2020",
}


@dataclass(frozen=True)
class Anchor:
    """One published result on a zoo task's test split."""

    task: str
    method: str
    protocol: str
    input: str
    values: dict[str, float] = field(default_factory=dict)
    source: str = ""
    note: str = ""


def _medmnist_v2(task: str, rows: dict[str, tuple[float, float]], note: str) -> list[Anchor]:
    return [
        Anchor(task, method, "supervised from scratch" if "(" in method or "+" in method else "AutoML",
               "28^3" if task == "adrenalmnist3d" else ("224 px (28 upsampled)" if "224" in method else "28 px"),
               {"auc": auc, "acc": acc}, "medmnist_v2", note)
        for method, (auc, acc) in rows.items()
    ]


_PNEUMONIA_NOTE = "PneumoniaMNIST: the same 624 Kermany test images, at 28 px"
_SIZES = ("28 px", "64 px", "128 px", "224 px")


def _plus(task: str, protocol: str, auc: tuple[float, ...], acc: tuple[float, ...] | None, note: str,
          method: str = "ResNet-18 (ImageNet)") -> list[Anchor]:
    out = []
    for i, size in enumerate(_SIZES):
        values = {"auc": auc[i] / 100.0}
        if acc is not None:
            values["acc"] = acc[i] / 100.0
        shown = size if size == "224 px" else f"{size}, zero-padded to 224"
        out.append(Anchor(task, method, protocol, shown, values, "medmnist_plus", note))
    return out


ANCHORS: tuple[Anchor, ...] = tuple(
    _medmnist_v2("retinamnist", {
        "ResNet-18 (28)": (0.717, 0.524), "ResNet-18 (224)": (0.710, 0.493),
        "ResNet-50 (28)": (0.726, 0.528), "ResNet-50 (224)": (0.716, 0.511),
        "auto-sklearn": (0.690, 0.515), "AutoKeras": (0.719, 0.503), "Google AutoML Vision": (0.750, 0.531),
    }, "RetinaMNIST test (400)")
    + _plus("retinamnist", "fine-tune (end-to-end)", (70.4, 74.4, 80.8, 83.2), (52.3, 53.1, 59.3, 61.5),
            "RetinaMNIST test (400), mean of 3 seeds")
    + _plus("retinamnist", "linear probe", (68.9, 71.2, 75.5, 79.5), None, "RetinaMNIST test (400), mean of 3 seeds")
    + _medmnist_v2("kermany_pneumonia", {
        "ResNet-18 (28)": (0.944, 0.854), "ResNet-18 (224)": (0.956, 0.864),
        "ResNet-50 (28)": (0.948, 0.854), "ResNet-50 (224)": (0.962, 0.884),
        "auto-sklearn": (0.942, 0.855), "AutoKeras": (0.947, 0.878), "Google AutoML Vision": (0.991, 0.946),
    }, _PNEUMONIA_NOTE)
    + _plus("kermany_pneumonia", "fine-tune (end-to-end)", (95.0, 94.3, 97.9, 98.0), (83.1, 86.0, 89.9, 91.1),
            "PneumoniaMNIST test (the 624 Kermany test images), mean of 3 seeds")
    + _plus("kermany_pneumonia", "linear probe", (87.7, 94.2, 94.4, 96.9), (74.4, 78.9, 80.4, 83.2),
            "PneumoniaMNIST test (the 624 Kermany test images), mean of 3 seeds")
    + _plus("kermany_pneumonia", "linear probe", (97.3, 97.6, 98.9, 98.9), None,
            "best linear probe of MedMNIST+", method="DINO ViT-B/16 (ImageNet)")
    + [Anchor("kermany_pneumonia", "Inception V3 (ImageNet)", "frozen convolutions (linear probe)",
              "full resolution", {"auc": 0.968, "acc": 0.928}, "kermany2018",
              "the 624-image test set; sensitivity 93.2%, specificity 90.1%")]
    + _medmnist_v2("adrenalmnist3d", {
        "ResNet-18+2.5D": (0.718, 0.772), "ResNet-18+3D": (0.827, 0.721), "ResNet-18+ACS": (0.839, 0.754),
        "ResNet-50+2.5D": (0.732, 0.763), "ResNet-50+3D": (0.828, 0.745), "ResNet-50+ACS": (0.828, 0.758),
        "auto-sklearn": (0.828, 0.802), "AutoKeras": (0.804, 0.705),
    }, "AdrenalMNIST3D test (298)")
    + [
        Anchor("drive_vessels", "U-Net", "supervised", "DRIVE", {"f1": 0.8142, "auc": 0.9755}, "r2unet",
               "re-run in the R2U-Net paper"),
        Anchor("drive_vessels", "R2U-Net", "supervised", "DRIVE", {"f1": 0.8171, "auc": 0.9784}, "r2unet"),
        Anchor("drive_vessels", "IterNet", "supervised", "DRIVE", {"f1": 0.8205, "auc": 0.9816}, "iternet",
               "scored inside the FOV mask"),
        Anchor("drive_vessels", "SA-UNet", "supervised", "DRIVE", {"f1": 0.8263, "auc": 0.9864}, "saunet",
               "scored on the whole image"),
    ]
)


def anchors_for(task: str, metric: str | None = None) -> list[Anchor]:
    """Anchors on ``task``'s test split (that report ``metric``, when given)."""
    return [a for a in ANCHORS if a.task == task and (metric is None or metric in a.values)]
