"""Probe mode: an epoch with cached hidden states against the backbone in the loop.

    python benchmarks/ser_probe.py [--clips 40] [--size base|large|tiny]

A randomly initialised wav2vec2 of the real base size (weights do not change the cost)
on real EmoDB clips; one epoch that fills the cache, one epoch from the cache, and one
epoch with the backbone in the loop (no cache). Writes benchmarks/results/ser_probe_{device}.json.
The input pipeline's before/after figures are benchmarks/ser_pipeline.py's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.ser.cache import FeatureCache  # noqa: E402
from examples.ser.data import read_table  # noqa: E402
from examples.ser.metrics import soft_cross_entropy  # noqa: E402
from examples.ser.model import SERModel, load_backbone, save_sized_backbone, save_tiny_backbone  # noqa: E402
from examples.ser.train import Feed, device, run_epoch  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, default=40)
    p.add_argument("--size", choices=["tiny", "base", "large"], default="base")
    p.add_argument("--emodb-dir", default=str(ROOT.parent / "shared" / "data" / "emodb"))
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    labels = pd.read_csv(Path(args.emodb_dir) / "labels.csv").head(args.clips)
    labels.to_csv(tmp / "t.csv", index=False)
    table = read_table(tmp / "t.csv", args.emodb_dir, label_column="emotion")
    path = (save_tiny_backbone("wav2vec2", tmp / "bb") if args.size == "tiny"
            else save_sized_backbone("wav2vec2", tmp / "bb", large=args.size == "large"))
    dev = device()
    model = SERModel(load_backbone(path), len(table.labels)).to(dev)
    for parameter in model.backbone.parameters():
        parameter.requires_grad = False
    optimizer = torch.optim.AdamW(model.head.parameters(), lr=1e-3)
    timings = {}
    cache = FeatureCache(model.backbone, str(path), tmp / "cache", dev)
    cached = Feed(table, dev=dev, cache=cache, rng=np.random.default_rng(0))
    in_loop = Feed(table, dev=dev, rng=np.random.default_rng(0))
    for name, feed in (("fill cache", cached), ("cached", cached), ("backbone in the loop", in_loop)):
        started = time.perf_counter()
        run_epoch(model, feed, mode="probe", train=True, optimizer=optimizer, loss_fn=soft_cross_entropy)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        timings[name] = time.perf_counter() - started
    report = {
        "date": dt.date.today().isoformat(), "machine": platform.platform(), "device": dev.type,
        "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else None,
        "backbone": f"wav2vec2 ({args.size} size, random weights)",
        "parameters_m": round(sum(p.numel() for p in model.backbone.parameters()) / 1e6, 1),
        "clips": len(table.files), "seconds_per_epoch": timings,
        "speedup_cached_vs_in_loop": timings["backbone in the loop"] / timings["cached"],
        "clips_per_second": {k: len(table.files) / v for k, v in timings.items()},
        "command": "python benchmarks/ser_probe.py " + " ".join(sys.argv[1:]),
    }
    out = ROOT / "benchmarks" / "results" / f"ser_probe_{dev.type}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
