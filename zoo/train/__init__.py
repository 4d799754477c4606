"""Pretraining: the ``zoo pretrain`` loop, its checkpoints, distributed set-up and schedules."""
