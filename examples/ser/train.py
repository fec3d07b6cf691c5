"""Train a speech emotion model on (soft) labels, or on one output of an annotation run.

    python -m examples.ser.train --table T --audio-dir D (--label-column C | --soft-label-column S)
        --backbone NAME_OR_PATH --mode probe|finetune --epochs N --out DIR
    python -m examples.ser.train --run RUN_DIR [--output NAME] --audio-dir D ...

With ``--run`` the targets are one output of the run (``runs.read_run``; the primary one
unless ``--output`` names another): a categorical or ordinal output trains a classifier
over its categories, a numeric one a regressor (``objectives``).

``probe``: the backbone is frozen; every layer's hidden states are extracted once per clip
(in length-sorted batches), kept on the device and cached on disk (float16), so each
epoch costs the head only. ``finetune``: the
backbone (not its CNN encoder) trains too, at a lower learning rate than the head, after
a linear warm-up. Loss: soft cross-entropy against the soft label (``--loss soft``) or
cross-entropy on its argmax (``--loss hard``, MELT's setting); a numeric output: mean
squared error on the target scaled to [0, 1] by the output's range (``--loss mse``). The
best epoch by validation UA (numeric: CCC) is kept; ``results.json`` holds validation and
test scores, ``targets.csv`` the target of every clip and its part of the split.

Input pipeline: audio is read and resampled in ``--workers`` DataLoader processes into
pinned memory (0 on a CPU, up to 8 with a GPU), clips of similar length share a batch
(``loader.LengthBuckets``), and predictions stay on the device until the epoch ends, so
the device never waits for the host between steps.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import ser_extra

with ser_extra():
    import torch

from .cache import FeatureCache
from .data import (
    SAMPLE_RATE,
    Table,
    add_table_arguments,
    random_split,
    speaker_folds,
    table_from_arguments,
)
from .loader import Endless, LengthBuckets, audio_lengths, audio_loader, default_workers
from .model import SERModel, load_backbone
from .objectives import objective_for


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Feed:
    """One table's batches, epoch after epoch, on the device.

    With a ``cache`` (probe mode): hidden states indexed out of the cache, which extracts
    the table's clips on the first pass. Without: audio from one DataLoader over all epochs
    (``loader.Endless``), whose workers read ahead across an epoch's end. ``rng`` given (training): shuffled, bucketed batches and random
    crops of ``crop_s`` seconds; else every clip whole, sorted by length.
    """

    def __init__(self, table: Table, *, dev: torch.device, batch_size: int = 8, cache: FeatureCache | None = None,
                 rng: np.random.Generator | None = None, crop_s: float = 5.0, workers: int = 0):
        self.table, self.dev, self.cache = table, dev, cache
        self.batch_size, self.rng, self.crop_s, self.workers = batch_size, rng, crop_s, workers
        self.targets = torch.tensor(table.targets, dtype=torch.float32, device=dev)
        self._slots: np.ndarray | None = None
        self._sampler: LengthBuckets | None = None
        self._batches: Iterator[Any] | None = None

    def __len__(self) -> int:
        return len(self.table.files)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """(rows, inputs, mask): inputs are waves (B x T, mask None when unpadded) or hidden
        states (L x B x T x H)."""
        if self.cache is not None:
            if self._slots is None:
                self._slots = self.cache.fill(self.table.files)
                self._sampler = LengthBuckets(self.cache.length[self._slots], self.batch_size, rng=self.rng,
                                              crop=int(self.crop_s * self.cache.frames_per_second))
            assert self._sampler is not None
            for entries in self._sampler:
                states, mask = self.cache.batch(self._slots, entries)
                rows = torch.tensor([row for row, _, _ in entries]).to(self.dev, non_blocking=True)
                yield rows, states, mask
            return
        if self._batches is None:
            self._sampler = LengthBuckets(audio_lengths(self.table.files), self.batch_size, rng=self.rng,
                                          crop=int(self.crop_s * SAMPLE_RATE))
            self._batches = iter(audio_loader(self.table.files, Endless(self._sampler), workers=self.workers,
                                              pin=self.dev.type == "cuda"))
        assert self._sampler is not None
        for _ in range(len(self._sampler)):
            rows, waves, mask = next(self._batches)
            yield (rows.to(self.dev, non_blocking=True), waves.to(self.dev, non_blocking=True),
                   None if mask is None else mask.to(self.dev, non_blocking=True))


def run_epoch(model: SERModel, feed: Feed, *, mode: str, train: bool, optimizer: Any = None, scheduler: Any = None,
              loss_fn: Any = None, weights: Any = None, predict: Any = None) -> np.ndarray:
    """One pass; returns the predictions in table order: ``predict`` of the head's outputs
    (default: softmax, the probabilities N x K; a regression's values are N x 1).

    Nothing is copied to the host until the pass ends, so steps queue on the device.
    """
    predict = predict or (lambda outputs: torch.softmax(outputs, dim=-1))
    model.train(train)
    if mode == "probe":
        model.backbone.eval()
    rows_seen, outputs = [], []
    for rows, inputs, mask in feed:
        with torch.set_grad_enabled(train), torch.autocast(feed.dev.type, dtype=torch.bfloat16,
                                                           enabled=feed.dev.type == "cuda"):
            logits = model.head(inputs, mask) if feed.cache is not None else model(inputs, mask)
            if train:
                loss = loss_fn(logits.float(), feed.targets[rows], weights)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
        rows_seen.append(rows)
        outputs.append(predict(logits.detach().float()))
    probs = torch.zeros(len(feed), feed.targets.shape[1], device=feed.dev)
    probs[torch.cat(rows_seen)] = torch.cat(outputs)
    return probs.cpu().numpy().astype(np.float64)


def split(table: Table, args: argparse.Namespace) -> tuple[Table, Table, Table]:
    if table.parts is not None:
        part = np.array(table.parts)
        return tuple(table.subset(np.flatnonzero(part == name)) for name in ("train", "val", "test"))  # type: ignore[return-value]
    if table.speakers is not None:
        train, val, test = speaker_folds(table.speakers, seed=args.seed)[args.fold % len(set(table.speakers))]
    else:
        train, val, test = random_split(len(table.files), seed=args.seed)
    return table.subset(train), table.subset(val), table.subset(test)


def fit(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # transformers draws SpecAugment's time masks from numpy's global generator
    rng = np.random.default_rng(args.seed)
    dev = device()
    table = table_from_arguments(args)
    train, val, test = split(table, args)
    objective = objective_for(table, args.loss)
    backbone = load_backbone(args.backbone)
    model = SERModel(backbone, objective.n_outputs, width=args.head_width).to(dev)
    workers = default_workers(dev) if args.workers is None else args.workers
    cache = None
    if args.mode == "probe":
        for parameter in model.backbone.parameters():
            parameter.requires_grad = False
        if not args.no_feature_cache:
            backbone_id = str(Path(args.backbone).resolve() if Path(args.backbone).exists() else args.backbone)
            cache = FeatureCache(model.backbone, backbone_id, Path(args.feature_cache), dev,
                                 batch_size=args.batch_size, workers=workers)
        groups = [{"params": model.head.parameters(), "lr": args.lr}]
    else:
        groups = [{"params": model.head.parameters(), "lr": args.lr},
                  {"params": [p for p in model.backbone.parameters() if p.requires_grad], "lr": args.backbone_lr}]
    optimizer = torch.optim.AdamW(groups, weight_decay=1e-4)
    steps = args.epochs * max(1, int(np.ceil(len(train.files) / args.batch_size)))
    warmup = max(1, int(steps * args.warmup)) if args.mode == "finetune" else 1
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    weights = torch.tensor(objective.weights(train.targets), dtype=torch.float32, device=dev) \
        if args.class_weights else None
    feeds = {name: Feed(part, dev=dev, batch_size=args.batch_size, cache=cache, rng=rng if name == "train" else None,
                        crop_s=args.crop_s, workers=workers) for name, part in (("train", train), ("val", val), ("test", test))}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_targets(out / "targets.csv", {"train": train, "val": val, "test": test})
    key = objective.key
    best: dict[str, Any] = {key: -np.inf}
    history = []
    from tqdm import tqdm

    bar = tqdm(range(1, args.epochs + 1), desc=f"{args.mode} {Path(str(args.backbone)).name}", unit="epoch",
               disable=args.quiet)
    for epoch in bar:
        started = time.perf_counter()
        run_epoch(model, feeds["train"], mode=args.mode, train=True, optimizer=optimizer, scheduler=scheduler,
                  loss_fn=objective.loss, weights=weights, predict=objective.predict)
        seconds = time.perf_counter() - started
        val_scores = objective.scores(val.targets, run_epoch(model, feeds["val"], mode=args.mode, train=False,
                                                             predict=objective.predict))
        history.append({"epoch": epoch, "train_seconds": seconds, f"val_{key}": val_scores[key]})
        bar.set_postfix_str(f"val {key.upper()} {val_scores[key]:.3f}")
        if val_scores[key] > best[key] or epoch == 1:
            best = {**val_scores, "epoch": epoch}
            torch.save({"state": model.state_dict(), "labels": table.labels, "backbone": str(args.backbone),
                        "mode": args.mode, "head_width": args.head_width, "kind": table.kind,
                        "range": table.range, "n_outputs": objective.n_outputs}, out / "best.pt")
    state = torch.load(out / "best.pt", map_location=dev, weights_only=False)
    model.load_state_dict(state["state"])
    test_scores = objective.scores(test.targets, run_epoch(model, feeds["test"], mode=args.mode, train=False,
                                                           predict=objective.predict))
    results = {"output": table.output, "kind": table.kind, "loss": objective.loss_name,
               "selected_by": f"val_{key}", "reported": list(objective.reported),
               "val": best, "test": test_scores, "history": history, "device": dev.type,
               "train_clips": len(train.files), "val_clips": len(val.files), "test_clips": len(test.files),
               "args": {k: str(v) for k, v in vars(args).items()}}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train a speech emotion model on (soft) labels")
    add_table_arguments(p, run=True)
    p.add_argument("--fold", type=int, default=0, help="which speaker is held out for testing")
    p.add_argument("--split-column", help="column with train/val/test per row (overrides speaker folds)")
    p.add_argument("--backbone", required=True, help="hub name (facebook/wav2vec2-base, ...) or local path")
    p.add_argument("--mode", choices=["probe", "finetune"], default="probe")
    p.add_argument("--loss", choices=["soft", "hard", "mse"], help="soft (default) or hard cross-entropy for "
                   "categories; mse for a numeric output (its default)")
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
    p.add_argument("--workers", type=int, help="DataLoader processes that read audio (default: 0 on a CPU, "
                   "up to 8 with a GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def write_targets(path: Path, parts: dict[str, Table]) -> None:
    """``targets.csv``: each clip's file, part of the split and target, as the trainer uses it
    (``target`` for a numeric output, else ``p_LABEL`` per category)."""
    import pandas as pd

    frames = []
    for name, part in parts.items():
        columns = ["target"] if part.kind == "numeric" else [f"p_{label}" for label in part.labels]
        frame = pd.DataFrame(part.targets, columns=columns)
        frame.insert(0, "split", name)
        frame.insert(0, "file", [str(f) for f in part.files])
        frames.append(frame)
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The line ``main`` prints: the selection score on validation and the test scores reported."""
    key = results["selected_by"].removeprefix("val_")
    return {f"val_{key}": results["val"][key], "test": {k: results["test"][k] for k in results["reported"]}}


def main(argv: list[str] | None = None) -> int:
    print(json.dumps(summary(fit(parser().parse_args(argv)))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
