"""Evaluation: the harness (``zoo eval``: linear probe, fine-tuning, segmentation, robustness), its tasks,
metrics and probe, and Grad-CAM figures."""

# task names without importing the harness (the CLI lists them instantly); tests check they match TASKS
TASK_NAMES = ("kermany_pneumonia", "retinamnist", "adrenalmnist3d", "drive_vessels")

__all__ = ["TASK_NAMES"]
