"""The benches' CPU preset: smaller Compgen widths and batch that train within a CPU budget, and the channel-PSNR
range the approaches are trained over so one model serves the whole sweep (bench/quality.py, rd.py,
train_speed.py)."""
from __future__ import annotations

PSNR_RANGE = [-5.0, 50.0]
CPU_PRESET = ["model.channels=64", "model.num_res=1", "model.num_mult=2", "model.latent_channels=16",
              "model.elm_channels=32", "model.elm_num_res=2", "model.elm_hidden=512", "train.batch_size=50",
              "train.max_val_batches=2"]
PAPER_DROP = ("train.batch_size", "train.max_val_batches")  # paper mode keeps only the CPU preset's widths
