"""Score a trained SER checkpoint on a table (in-domain or another corpus).

    python -m examples.ser.evaluate --checkpoint DIR/best.pt --table T --audio-dir D
        (--label-column C | --soft-label-column S) [--map FROM=TO ...] [--out scores.json]

``--map`` renames the table's labels onto the model's (``happiness=joy``); rows whose
label the model does not know are dropped, and UA is taken over the shared classes.
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

from .data import Table, add_table_arguments, table_from_arguments
from .loader import default_workers
from .metrics import scores
from .model import SERModel, load_backbone
from .train import Feed, device, run_epoch


def load_checkpoint(path: str | Path) -> tuple[SERModel, dict[str, Any]]:
    dev = device()
    state = torch.load(path, map_location=dev, weights_only=False)
    outputs = state.get("n_outputs", len(state["labels"]))
    model = SERModel(load_backbone(state["backbone"]), outputs, width=state["head_width"]).to(dev)
    model.load_state_dict(state["state"])
    model.eval()
    return model, state


def remap(table: Table, mapping: dict[str, str], labels: list[str]) -> Table:
    """The table's targets moved onto ``labels`` through ``mapping``; unknown classes dropped."""
    names = [mapping.get(x, x) for x in table.labels]
    targets = np.zeros((len(table.files), len(labels)))
    for k, name in enumerate(names):
        if name in labels:
            targets[:, labels.index(name)] += table.targets[:, k]
    keep = np.flatnonzero(targets.sum(axis=1) > 0.5)
    targets = targets[keep] / targets[keep].sum(axis=1, keepdims=True)
    return Table([table.files[i] for i in keep], targets, labels,
                 None if table.speakers is None else [table.speakers[i] for i in keep])


def evaluate(checkpoint: str | Path, table: Table, mapping: dict[str, str] | None = None) -> dict[str, Any]:
    model, state = load_checkpoint(checkpoint)
    if state.get("kind") == "numeric":
        raise SystemExit(f"{checkpoint}: a regressor of output {state['labels'][0]!r}; evaluate scores classifiers "
                         "(its validation and test scores are in results.json beside it)")
    labels = list(state["labels"])
    table = remap(table, mapping or {}, labels)
    dev = device()
    feed = Feed(table, dev=dev, workers=default_workers(dev))  # a probe checkpoint runs its backbone here too
    probs = run_epoch(model, feed, mode=state["mode"], train=False)
    present = sorted(set(table.targets.argmax(axis=1)))
    result = scores(table.targets, probs, labels)
    result["classes_present"] = [labels[k] for k in present]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    add_table_arguments(p)
    p.add_argument("--map", action="append", default=[], metavar="FROM=TO")
    p.add_argument("--out")
    args = p.parse_args(argv)
    table = table_from_arguments(args)
    result = evaluate(args.checkpoint, table, dict(m.split("=", 1) for m in args.map))
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(json.dumps({k: result[k] for k in ("n", "ua", "wa", "macro_f1", "weighted_f1", "kl")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
