"""Do demonstrations chosen per item change agreement with the human labels? MELD dev, offline.

    python benchmarks/demonstrations.py [--n 300] [--seed 0] [--k 4] [--model local/smollm2-135m]

Annotates a seeded sample of MELD dev (``--n 0``: all 1,109 rows) with the embedded model
through ``annotate`` (label scoring: one pass gives the label distribution; the
prediction is its argmax), under three prompts: ``emotion_melt`` (no demonstrations),
``emotion_melt_demos`` with k stratified examples, and with the k lexically most similar
examples (TF-IDF cosine over the utterance), the pool being MELD train
(``train_sent_emo.csv``, 9,989 rows). Reports accuracy, macro-F1, UAR and Cohen's kappa
against the human labels (``analysis.agreement.vs_gold``), how often the prediction is
the label of the most similar example, and the seconds per item. The answer cache and
run directories are temporary. Writes benchmarks/results/demonstrations.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llm_annotator import annotate  # noqa: E402
from llm_annotator.analysis.agreement import vs_gold  # noqa: E402
from llm_annotator.core.prompts import compile_prompt  # noqa: E402
from llm_annotator.core.task import Task, load_task  # noqa: E402


def conditions(meld: Path, k: int) -> dict[str, Task]:
    demos = load_task("emotion_melt_demos").with_demonstrations(pool=str(meld / "train_sent_emo.csv"), k=k)
    return {"none": load_task("emotion_melt"),
            f"stratified_k{k}": demos,
            f"similar_k{k}": demos.with_demonstrations(select="similar")}


def pool_ids_and_labels(prompt: Any) -> tuple[list[str], list[str]]:
    """The pool's ids and gold labels, as the prompt read them."""
    prompt.demonstrations_of({}, "")  # reads the pool
    pool = prompt._selector().pool
    return pool.ids, pool.labels


def majority(labels: list[str]) -> str:
    """The most frequent label; a tie goes to the one shown last (the most similar)."""
    counts = Counter(labels)
    best = max(counts.values())
    return next(label for label in reversed(labels) if counts[label] == best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meld-dir", default=str(ROOT.parent / "shared" / "data" / "meld"))
    parser.add_argument("--n", type=int, default=300, help="dev rows in the seeded sample (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--model", default="local/smollm2-135m")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "demonstrations.json"))
    args = parser.parse_args()
    meld = Path(args.meld_dir).resolve()
    dev = pd.read_csv(meld / "dev_sent_emo.csv")
    if args.n:
        dev = dev.sample(n=args.n, random_state=args.seed).sort_index()
    gold = dev["Emotion"].tolist()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LLM_ANNOTATOR_CACHE_DIR"] = str(Path(tmp) / "cache")
        for name, task in conditions(meld, args.k).items():
            started = time.perf_counter()
            result = annotate(dev, task, [args.model], id_column="Sr No.", progress=False,
                              cache=Path(tmp) / "cache", out=Path(tmp) / name)
            seconds = time.perf_counter() - started
            labels = list(result.task.labels)
            probs = result.soft_labels().to_numpy(dtype=float)
            pred = [labels[i] for i in probs.argmax(axis=1)]
            m = vs_gold(gold, pred, labels)
            row = {"condition": name, "n": m["n"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                   "uar": m["uar"], "cohen_kappa": m["cohen_kappa"],
                   "predicted": {k: int(v) for k, v in pd.Series(pred).value_counts().items()},
                   "seconds_per_item": seconds / len(dev)}
            if task.demonstrations is not None:  # how the examples relate to the gold and the prediction
                prompt = compile_prompt(task)
                pool = {pid: lab for pid, lab in zip(*pool_ids_and_labels(prompt), strict=True)}
                records: list[dict[str, Any]] = dev.to_dict("records")  # type: ignore[assignment]
                shown = [[pool[i] for i in prompt.demonstrations_of(r, str(r["Sr No."])) or []] for r in records]
                row["gold_among_shown"] = sum(g in s for g, s in zip(gold, shown, strict=True)) / len(dev)
                row["prediction_is_last_shown_label"] = sum(p == s[-1] for p, s in zip(pred, shown, strict=True)) \
                    / len(dev)
                if task.demonstrations.select == "similar":  # the examples' labels alone, no model
                    for baseline, guess in (("nearest_label", [s[-1] for s in shown]),
                                            ("majority_of_shown", [majority(s) for s in shown])):
                        b = vs_gold(gold, guess, labels)
                        row[f"baseline_{baseline}"] = {k: b[k] for k in ("accuracy", "macro_f1", "uar", "cohen_kappa")}
            rows.append(row)
            print(json.dumps(row), flush=True)
    always_neutral = vs_gold(gold, ["neutral"] * len(dev), labels)
    report = {"date": dt.date.today().isoformat(), "machine": platform.platform(),
              "cpus": os.cpu_count(), "model": args.model, "k": args.k,
              "sample": {"split": "MELD dev", "n": len(dev), "of": 1109, "seed": args.seed,
                         "how": "pandas DataFrame.sample(n, random_state=seed)" if args.n else "all rows"},
              "pool": "MELD train (train_sent_emo.csv, 9,989 rows)",
              "command": "python benchmarks/demonstrations.py " + " ".join(sys.argv[1:]),
              "always_neutral": {k: always_neutral[k] for k in ("accuracy", "macro_f1", "uar", "cohen_kappa")},
              "rows": rows}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
