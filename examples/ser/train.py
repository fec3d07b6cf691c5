"""Train a speech emotion model on (soft) labels.

    python -m examples.ser.train --table T --audio-dir D (--label-column C | --soft-label-column S)
        --backbone NAME_OR_PATH --mode probe|finetune --epochs N --out DIR

``probe``: the backbone is frozen; every layer's hidden states are extracted once per clip
and cached on disk (float16), so each epoch costs the head only. ``finetune``: the
backbone (not its CNN encoder) trains too, at a lower learning rate than the head, after
a linear warm-up. Loss: soft cross-entropy against the soft label (``--loss soft``) or
cross-entropy on its argmax (``--loss hard``, MELT's setting). The best epoch by
validation UA is kept; ``results.json`` holds validation and test scores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import ser_extra

with ser_extra():
    import torch

from .data import (
    SAMPLE_RATE,
    Table,
    add_table_arguments,
    crop,
    load_audio,
    pad,
    random_split,
    speaker_folds,
    table_from_arguments,
)
from .metrics import class_weights, hard_cross_entropy, scores, soft_cross_entropy
from .model import SERModel, hidden_states, load_backbone


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class FeatureCache:
    """Hidden states of every layer per clip, computed once with the frozen backbone."""

    def __init__(self, backbone: Any, backbone_id: str, directory: Path | None, dev: torch.device):
        self.backbone, self.dev = backbone, dev
        self.directory = None if directory is None else directory / hashlib.sha256(backbone_id.encode()).hexdigest()[:16]
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.memory: dict[Path, np.ndarray] = {}
        self.computed = 0

    @torch.no_grad()
    def compute(self, path: Path) -> np.ndarray:
        wave = torch.from_numpy(load_audio(path))[None].to(self.dev)
        mask = torch.ones_like(wave, dtype=torch.bool)
        with torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.dev.type == "cuda"):
            states, _ = hidden_states(self.backbone, wave, mask)
        self.computed += 1
        return states[:, 0].float().cpu().numpy().astype(np.float16)  # L x T x H

    def get(self, path: Path) -> np.ndarray:
        if self.directory is None:  # backbone in the loop: recompute every time
            return self.compute(path)
        if path not in self.memory:
            file = self.directory / (hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24] + ".npy")
            if file.exists():
                self.memory[path] = np.load(file)
            else:
                self.memory[path] = self.compute(path)
                np.save(file, self.memory[path])
        return self.memory[path]


def batches(n: int, size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return [order[i:i + size] for i in range(0, n, size)]


def frames_per_second(backbone: Any) -> float:
    return float(backbone._get_feat_extract_output_lengths(torch.tensor(SAMPLE_RATE)))


def run_epoch(model: SERModel, table: Table, *, mode: str, cache: FeatureCache | None, train: bool,
              optimizer: Any = None, scheduler: Any = None, loss_fn: Any = None, weights: Any = None,
              crop_s: float = 5.0, batch_size: int = 8, rng: np.random.Generator | None = None,
              dev: torch.device) -> np.ndarray:
    """One pass; returns the predicted probabilities (N x K) in table order."""
    model.train(train)
    if mode == "probe":
        model.backbone.eval()
    probs = np.zeros_like(table.targets)
    fps = frames_per_second(model.backbone)
    for index in batches(len(table.files), batch_size, rng if train else None):
        targets = torch.tensor(table.targets[index], dtype=torch.float32, device=dev)
        with torch.set_grad_enabled(train), torch.autocast(dev.type, dtype=torch.bfloat16,
                                                           enabled=dev.type == "cuda"):
            if mode == "probe":
                assert cache is not None
                feats = [cache.get(table.files[i]) for i in index]
                if train and rng is not None:
                    feats = [f[:, crop(f.shape[1], int(crop_s * fps), rng)] for f in feats]
                stacked, mask = pad([np.moveaxis(f, 0, 1) for f in feats])  # B x T x L x H
                states = torch.from_numpy(stacked).to(dev).permute(2, 0, 1, 3).float()
                logits = model.head(states, torch.from_numpy(mask).to(dev))
            else:
                waves = [load_audio(table.files[i]) for i in index]
                if train and rng is not None:
                    waves = [w[crop(len(w), int(crop_s * SAMPLE_RATE), rng)] for w in waves]
                stacked, mask = pad(waves)
                logits = model(torch.from_numpy(stacked).to(dev), torch.from_numpy(mask).to(dev))
            if train:
                loss = loss_fn(logits.float(), targets, weights)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
        probs[index] = torch.softmax(logits.float(), dim=-1).detach().cpu().numpy()
    return probs


def split(table: Table, args: argparse.Namespace) -> tuple[Table, Table, Table]:
    if args.split_column:
        import pandas as pd

        part = pd.read_csv(args.table)[args.split_column].astype(str).to_numpy() if str(args.table).endswith(".csv") \
            else pd.read_json(args.table, lines=True)[args.split_column].astype(str).to_numpy()
        return tuple(table.subset(np.flatnonzero(part == name)) for name in ("train", "val", "test"))  # type: ignore[return-value]
    if table.speakers is not None:
        train, val, test = speaker_folds(table.speakers, seed=args.seed)[args.fold % len(set(table.speakers))]
    else:
        train, val, test = random_split(len(table.files), seed=args.seed)
    return table.subset(train), table.subset(val), table.subset(test)


def fit(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    dev = device()
    table = table_from_arguments(args)
    train, val, test = split(table, args)
    backbone = load_backbone(args.backbone)
    model = SERModel(backbone, len(table.labels), width=args.head_width).to(dev)
    cache = None
    if args.mode == "probe":
        for parameter in model.backbone.parameters():
            parameter.requires_grad = False
        cache_dir = None if args.no_feature_cache else Path(args.feature_cache)
        cache = FeatureCache(model.backbone, f"{Path(args.backbone).resolve() if Path(args.backbone).exists() else args.backbone}",
                             cache_dir, dev)
        groups = [{"params": model.head.parameters(), "lr": args.lr}]
    else:
        groups = [{"params": model.head.parameters(), "lr": args.lr},
                  {"params": [p for p in model.backbone.parameters() if p.requires_grad], "lr": args.backbone_lr}]
    optimizer = torch.optim.AdamW(groups, weight_decay=1e-4)
    steps = args.epochs * max(1, int(np.ceil(len(train.files) / args.batch_size)))
    warmup = max(1, int(steps * args.warmup)) if args.mode == "finetune" else 1
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    loss_fn = soft_cross_entropy if args.loss == "soft" else hard_cross_entropy
    weights = torch.tensor(class_weights(train.targets), dtype=torch.float32, device=dev) if args.class_weights else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    best: dict[str, Any] = {"ua": -1.0}
    history = []
    from tqdm import tqdm

    bar = tqdm(range(1, args.epochs + 1), desc=f"{args.mode} {Path(str(args.backbone)).name}", unit="epoch",
               disable=args.quiet)
    for epoch in bar:
        started = time.perf_counter()
        run_epoch(model, train, mode=args.mode, cache=cache, train=True, optimizer=optimizer, scheduler=scheduler,
                  loss_fn=loss_fn, weights=weights, batch_size=args.batch_size, rng=rng, dev=dev,
                  crop_s=args.crop_s)
        seconds = time.perf_counter() - started
        val_scores = scores(val.targets, run_epoch(model, val, mode=args.mode, cache=cache, train=False,
                                                   batch_size=args.batch_size, dev=dev), table.labels)
        history.append({"epoch": epoch, "train_seconds": seconds, "val_ua": val_scores["ua"]})
        bar.set_postfix_str(f"val UA {val_scores['ua']:.3f}")
        if val_scores["ua"] > best["ua"]:
            best = {**val_scores, "epoch": epoch}
            torch.save({"state": model.state_dict(), "labels": table.labels, "backbone": str(args.backbone),
                        "mode": args.mode, "head_width": args.head_width}, out / "best.pt")
    state = torch.load(out / "best.pt", map_location=dev, weights_only=False)
    model.load_state_dict(state["state"])
    test_scores = scores(test.targets, run_epoch(model, test, mode=args.mode, cache=cache, train=False,
                                                 batch_size=args.batch_size, dev=dev), table.labels)
    results = {"val": best, "test": test_scores, "history": history, "device": dev.type,
               "train_clips": len(train.files), "val_clips": len(val.files), "test_clips": len(test.files),
               "args": {k: str(v) for k, v in vars(args).items()}}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train a speech emotion model on (soft) labels")
    add_table_arguments(p)
    p.add_argument("--fold", type=int, default=0, help="which speaker is held out for testing")
    p.add_argument("--split-column", help="column with train/val/test per row (overrides speaker folds)")
    p.add_argument("--backbone", required=True, help="hub name (facebook/wav2vec2-base, ...) or local path")
    p.add_argument("--mode", choices=["probe", "finetune"], default="probe")
    p.add_argument("--loss", choices=["soft", "hard"], default="soft")
    p.add_argument("--class-weights", action="store_true")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3, help="head learning rate")
    p.add_argument("--backbone-lr", type=float, default=5e-5, help="backbone learning rate (finetune)")
    p.add_argument("--warmup", type=float, default=0.1, help="share of steps of linear warm-up (finetune)")
    p.add_argument("--head-width", type=int, default=256)
    p.add_argument("--crop-s", type=float, default=5.0, help="random training crops, seconds")
    p.add_argument("--feature-cache", default="runs/ser_features", help="where probe mode caches hidden states")
    p.add_argument("--no-feature-cache", action="store_true", help="probe with the backbone in the loop")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    results = fit(parser().parse_args(argv))
    print(json.dumps({"val_ua": results["val"]["ua"], "test": {k: results["test"][k] for k in ("ua", "wa", "macro_f1")}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
