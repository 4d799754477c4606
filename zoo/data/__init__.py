"""Data: preprocessing transforms (``transforms``), datasets and augmentations for pretraining and evaluation."""
