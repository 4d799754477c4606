"""Training: the pretraining loop (``zoo pretrain``)."""
