"""EmoDB with per-clip soft labels from its listening test.

    python -m examples.ser.emodb --emodb-dir ../shared/data/emodb --out runs/emodb_soft.csv

``listener_recognition_pct`` is the share of 20 listeners who recognised the intended
emotion. The soft label puts that share on the intended emotion and spreads the rest
evenly over the other six (the listeners' other answers are not published).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

EMODB_LABELS = ["anger", "boredom", "disgust", "fear", "happiness", "neutral", "sadness"]


def soft_table(emodb_dir: str | Path) -> pd.DataFrame:
    frame = pd.read_csv(Path(emodb_dir) / "labels.csv")
    k = len(EMODB_LABELS)
    share = frame["listener_recognition_pct"].to_numpy(dtype=float) / 100
    soft = np.repeat(((1 - share) / (k - 1))[:, None], k, axis=1)
    soft[np.arange(len(frame)), [EMODB_LABELS.index(e) for e in frame["emotion"]]] = share
    frame["soft_label"] = [json.dumps([round(x, 6) for x in row]) for row in soft]
    return frame


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--emodb-dir", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    soft_table(args.emodb_dir).to_csv(args.out, index=False)
    print(f"wrote {args.out} (labels in order: {','.join(EMODB_LABELS)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
