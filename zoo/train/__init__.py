"""Training and evaluation: the pretraining loop (``zoo pretrain``); the evaluation harness (``evaluate``,
``tasks``, ``metrics``, ``probe``), robustness corruptions, Grad-CAM, and results -> registry metrics /
model card (``report``)."""

# task names without importing the harness (the CLI lists them instantly); tests check they match TASKS
TASK_NAMES = ("kermany_pneumonia", "retinamnist", "adrenalmnist3d", "drive_vessels")

__all__ = ["TASK_NAMES"]
