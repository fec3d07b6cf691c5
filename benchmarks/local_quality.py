"""Quality and speed of the embedded models on MELD dev (human labels), honestly measured.

    python benchmarks/local_quality.py [--meld-dir ../shared/data/meld] [--limit N]

For each embedded model and each of emotion_melt / emotion_context, annotates the MELD
dev split by label scoring through ``annotate`` (the same path as any run) and reports
accuracy, macro-F1 and unweighted average recall against the human labels, with and
without contextual calibration, and the time per item. Calibration is computed from the
same scores: p_cal ∝ p / p_cf, where p_cf is the model's distribution for a content-free
row (every field "N/A"); tests/test_local.py checks this equals ``calibrate=True``.
Writes benchmarks/results/local_quality.json and the table in docs/local-models.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llm_annotator import annotate  # noqa: E402
from llm_annotator.analysis.agreement import vs_gold  # noqa: E402
from llm_annotator.core.prompts import compile_prompt  # noqa: E402
from llm_annotator.core.task import load_task  # noqa: E402

MODELS = ["local/smollm2-135m", "local/gemma3-270m"]
TASKS = ["emotion_melt", "emotion_context"]


def content_free(task_name: str, model: str) -> np.ndarray:
    task = load_task(task_name)
    row = {field: "N/A" for field in compile_prompt(task).fields}
    result = annotate([row], task_name, [model], context=0, cache=True, progress=False)
    return result.soft_labels().to_numpy(dtype=float)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meld-dir", default=str(ROOT.parent / "shared" / "data" / "meld"))
    parser.add_argument("--limit", type=int, default=None, help="first N utterances only")
    parser.add_argument("--out", default=str(ROOT / "runs" / "local_quality"))
    args = parser.parse_args()
    dev = pd.read_csv(Path(args.meld_dir) / "dev_sent_emo.csv")
    if args.limit:
        dev = dev.head(args.limit)
    rows = []
    for model in MODELS:
        for task_name in TASKS:
            started = time.perf_counter()
            # k = 5 samples at temperature 1 (one scoring pass gives all five), as in docs/melt.md
            result = annotate(dev, task_name, [model], samples=5, temperature=1.0, id_column="Sr No.",
                              progress=False, out=Path(args.out) / f"{model.split('/')[1]}_{task_name}")
            seconds = time.perf_counter() - started
            labels = list(result.task.labels)
            probs = result.soft_labels().to_numpy(dtype=float)
            prior = content_free(task_name, model)
            calibrated = probs / prior
            calibrated /= calibrated.sum(axis=1, keepdims=True)
            gold = dev["Emotion"].tolist()
            for name, matrix in (("no", probs), ("yes", calibrated)):
                pred = [labels[i] for i in matrix.argmax(axis=1)]
                m = vs_gold(gold, pred, labels)
                rows.append({"model": model, "task": task_name, "calibrated": name, "n": m["n"],
                             "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "uar": m["uar"],
                             "cohen_kappa": m["cohen_kappa"],
                             "predicted": dict(pd.Series(pred).value_counts()),
                             "seconds_per_item": seconds / len(dev) if result.manifest["counts"]["new"] else None,
                             "new_votes": result.manifest["counts"]["new"]})
            print(rows[-2], rows[-1], sep="\n", flush=True)
    always_neutral = vs_gold(dev["Emotion"].tolist(), ["neutral"] * len(dev), labels)
    report = {"date": dt.date.today().isoformat(), "machine": platform.platform(),
              "processor": platform.machine(), "n_items": len(dev), "rows": rows,
              "always_neutral": {k: always_neutral[k] for k in ("accuracy", "macro_f1", "uar")},
              "command": "python benchmarks/local_quality.py"}
    out = ROOT / "benchmarks" / "results" / "local_quality.json"
    out.write_text(json.dumps(report, indent=2, default=int) + "\n")
    write_table(report)
    print(f"wrote {out} and the table in docs/local-models.md")


def write_table(report: dict) -> None:
    lines = ["| model | task | calibrated | accuracy | macro-F1 | UAR | Cohen's kappa | s/item (2 CPU cores) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        speed = f"{r['seconds_per_item']:.2f}" if r.get("seconds_per_item") else "–"
        lines.append(f"| `{r['model']}` | {r['task']} | {r['calibrated']} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} | "
                     f"{r['uar']:.3f} | {r['cohen_kappa']:.3f} | {speed} |")
    lines += ["", f"Measured {report['date']} with `{report['command']}` ({report['n_items']} utterances, "
              "label scoring, k = 5 at temperature 1; the time per item is the whole `annotate` call "
              "divided by the items, model loading included; calibrated rows reuse the same pass)."]
    doc = ROOT / "docs" / "local-models.md"
    text = doc.read_text()
    start, end = text.index("<!-- table:local_quality -->"), text.index("<!-- end -->")
    doc.write_text(text[:start] + "<!-- table:local_quality -->\n" + "\n".join(lines) + "\n" + text[end:])


if __name__ == "__main__":
    main()
