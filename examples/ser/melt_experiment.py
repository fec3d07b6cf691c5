"""MELT's experiment: the same clips trained on human labels and on LLM labels, scored in and out of domain.

    python -m examples.ser.melt_experiment --table runs/melt_train_emotion_melt/soft_labels.csv
        --audio-dir MELD_AUDIO --backbone facebook/wav2vec2-base --mode finetune --epochs 100
        --cross-table EMODB/labels.csv --cross-audio-dir EMODB --cross-label-column emotion
        --cross-map happiness=joy --out runs/melt_ser

The table is the soft-label dataset of ``examples/melt`` (columns ``file``,
``human_label``, ``label`` = LLM consensus, ``p_LABEL``). Three trainings on one split:
human labels (hard), LLM labels (hard, MELT's setting) and LLM soft labels (this
library's addition). Each is scored in-domain against the human labels and against the
LLM labels of the test clips, and on another corpus mapped onto shared classes. Writes
``results.json`` and ``results.md``. ``--features egemaps`` swaps the backbone for the
offline feature baseline (no pretrained weights, no GPU).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data import Table, random_split, read_table
from .evaluate import remap
from .metrics import scores

LABELS = ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]


def tables(path: str, audio_dir: str) -> dict[str, Table]:
    """human (hard), llm (hard) and llm_soft targets for the same clips."""
    labels = [c[2:] for c in pd.read_csv(path, nrows=1).columns if c.startswith("p_")] or LABELS
    return {
        "human": read_table(path, audio_dir, label_column="human_label", labels=labels),
        "llm": read_table(path, audio_dir, label_column="label", labels=labels),
        "llm_soft": read_table(path, audio_dir, soft_label_column="p_*"),
    }


def _run_features(train: Table, tests: dict[str, Table], kind: str, loss: str, cache: Path) -> dict[str, Any]:
    from .baseline import predict, train_classifier
    from .features import features

    x = features(train.files, kind, cache)
    mean, std = x.mean(0), x.std(0) + 1e-6
    model = train_classifier((x - mean) / std, train.targets, loss=loss)
    return {name: scores(t.targets, predict(model, (features(t.files, kind, cache) - mean) / std), t.labels)
            for name, t in tests.items() if len(t.files)}


def _run_backbone(train: Table, val: Table, tests: dict[str, Table], args: argparse.Namespace, name: str) -> dict[str, Any]:
    from .evaluate import evaluate
    from .train import fit, parser

    out = Path(args.out) / name
    out.mkdir(parents=True, exist_ok=True)
    frames = []
    for part, table in (("train", train), ("val", val), ("test", val)):
        frames.append(pd.DataFrame({"file": [str(f) for f in table.files], "part": part,
                                    "soft": [json.dumps(list(t)) for t in table.targets]}))
    pd.concat(frames).to_csv(out / "table.csv", index=False)
    parser_args = ["--table", str(out / "table.csv"), "--audio-dir", "/", "--soft-label-column", "soft",
                   "--labels", ",".join(train.labels), "--backbone", args.backbone, "--mode", args.mode,
                   "--epochs", str(args.epochs), "--loss", "hard" if name.endswith("hard") else "soft",
                   "--out", str(out), "--feature-cache", args.feature_cache, "-q"]
    parser_args += ["--split-column", "part"]
    fit(parser().parse_args(parser_args))
    return {test_name: evaluate(out / "best.pt", table) for test_name, table in tests.items() if len(table.files)}


def markdown(results: dict[str, dict[str, Any]]) -> str:
    columns = sorted({test for r in results.values() for test in r})
    lines = ["| trained on | " + " | ".join(f"{c} UA" for c in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[c]['ua']:.3f}" if c in r else "–" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", required=True, help="soft-label dataset of examples/melt (CSV)")
    p.add_argument("--audio-dir", required=True)
    p.add_argument("--backbone", help="hub name or path (with --mode); or use --features")
    p.add_argument("--mode", choices=["probe", "finetune"], default="probe")
    p.add_argument("--features", choices=["egemaps", "logmel"], help="offline feature baseline instead of a backbone")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--cross-table", help="another corpus for cross-corpus scores")
    p.add_argument("--cross-audio-dir")
    p.add_argument("--cross-label-column", default="emotion")
    p.add_argument("--cross-map", action="append", default=[], metavar="FROM=TO",
                   help="rename the other corpus's labels onto MELD's (happiness=joy)")
    p.add_argument("--feature-cache", default="runs/ser_features")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if not (args.backbone or args.features):
        raise SystemExit("give --backbone NAME (with --mode) or --features egemaps|logmel")
    by_target = tables(args.table, args.audio_dir)
    train_idx, val_idx, test_idx = random_split(len(by_target["human"].files), seed=args.seed, val=0.1, test=0.2)
    tests = {"in-domain human": by_target["human"].subset(test_idx),
             "in-domain llm": by_target["llm"].subset(test_idx)}
    if args.cross_table:
        other = read_table(args.cross_table, args.cross_audio_dir or ".", label_column=args.cross_label_column)
        tests["cross-corpus"] = remap(other, dict(m.split("=", 1) for m in args.cross_map), by_target["human"].labels)
    runs = {"human hard": by_target["human"], "llm hard": by_target["llm"], "llm soft": by_target["llm_soft"]}
    results: dict[str, dict[str, Any]] = {}
    for name, table in runs.items():
        train, val = table.subset(train_idx), table.subset(val_idx)
        if args.features:
            loss = "hard" if name.endswith("hard") else "soft"
            results[name] = _run_features(train.subset(np.arange(len(train.files))), tests, args.features, loss,
                                          Path(args.feature_cache))
        else:
            results[name] = _run_backbone(train, val, tests, args, name.replace(" ", "_"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "results.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
