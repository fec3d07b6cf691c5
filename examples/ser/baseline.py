"""The offline SER baseline: eGeMAPS or log-mel features and a linear (or small MLP) classifier.

    python -m examples.ser.baseline --table T --audio-dir D --label-column C --speaker-column S
        [--features egemaps|logmel] [--classifier linear|mlp] [--loss soft|hard] --out DIR

Leave-one-speaker-out: every speaker is the test set once; features are standardised on
the training speakers; the classifier trains with the same losses and is scored with
the same metrics as the backbone models. Reports UA/WA/macro-F1 pooled over all folds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from . import ser_extra

with ser_extra():
    import torch

from .data import Table, add_table_arguments, speaker_folds, table_from_arguments
from .features import features
from .metrics import class_weights, hard_cross_entropy, scores, soft_cross_entropy


def train_classifier(x: np.ndarray, targets: np.ndarray, *, kind: str = "linear", loss: str = "soft",
                     weighted: bool = False, epochs: int = 300, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    k = targets.shape[1]
    model = (torch.nn.Linear(x.shape[1], k) if kind == "linear" else
             torch.nn.Sequential(torch.nn.Linear(x.shape[1], 128), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                                 torch.nn.Linear(128, k)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    loss_fn = soft_cross_entropy if loss == "soft" else hard_cross_entropy
    weights = torch.tensor(class_weights(targets), dtype=torch.float32) if weighted else None
    xt, tt = torch.tensor(x), torch.tensor(targets, dtype=torch.float32)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss_fn(model(xt), tt, weights).backward()
        optimizer.step()
    model.eval()
    return model


def predict(model: Any, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(torch.tensor(x)), dim=-1).numpy()


def leave_one_speaker_out(table: Table, x: np.ndarray, **options: Any) -> dict[str, Any]:
    assert table.speakers is not None, "leave-one-speaker-out needs --speaker-column"
    probs = np.zeros_like(table.targets)
    per_fold = {}
    speakers = np.array(table.speakers)
    for train, val, test in speaker_folds(table.speakers):
        fit_idx = np.concatenate([train, val])  # no model selection here: validation joins training
        mean, std = x[fit_idx].mean(0), x[fit_idx].std(0) + 1e-6
        model = train_classifier((x[fit_idx] - mean) / std, table.targets[fit_idx], **options)
        probs[test] = predict(model, (x[test] - mean) / std)
        per_fold[str(speakers[test][0])] = scores(table.targets[test], probs[test], table.labels)["ua"]
    pooled = scores(table.targets, probs, table.labels)
    return {"pooled": pooled, "ua_per_speaker": per_fold, "mean_ua_over_speakers": float(np.mean(list(per_fold.values())))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_table_arguments(p, speaker_required=True)
    p.add_argument("--features", choices=["egemaps", "logmel"], default="egemaps")
    p.add_argument("--classifier", choices=["linear", "mlp"], default="linear")
    p.add_argument("--loss", choices=["soft", "hard"], default="soft")
    p.add_argument("--class-weights", action="store_true")
    p.add_argument("--feature-cache", default="runs/ser_features")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    table = table_from_arguments(args)
    x = features(table.files, args.features, Path(args.feature_cache))
    result = leave_one_speaker_out(table, x, kind=args.classifier, loss=args.loss, weighted=args.class_weights)
    result["args"] = vars(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    pooled = result["pooled"]
    print(f"{args.features} + {args.classifier} ({args.loss} loss), leave-one-speaker-out over "
          f"{len(result['ua_per_speaker'])} speakers, {pooled['n']} clips: UA {pooled['ua']:.3f}, "
          f"WA {pooled['wa']:.3f}, macro-F1 {pooled['macro_f1']:.3f} (chance UA {1 / len(table.labels):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
