"""Tables of clips and (soft) labels, audio at 16 kHz and speaker splits."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import ser_extra

SAMPLE_RATE = 16_000


@dataclass
class Table:
    """Clips with their targets.

    ``kind`` ``categorical`` or ``ordinal``: soft targets (N x K, rows sum to 1) in the
    order of ``labels`` (low to high for ordinal). ``numeric``: one number per clip (N x 1)
    on the scale ``range``, ``labels`` the output's name. ``parts`` holds train/val/test per
    clip when the table names its split; ``output``, the run's output the targets are of.
    """

    files: list[Path]
    targets: np.ndarray          # N x K soft labels, or N x 1 numbers
    labels: list[str]
    speakers: list[str] | None
    parts: list[str] | None = None
    kind: str = "categorical"
    range: tuple[float, float] | None = None
    output: str | None = None    # the run's output the targets come from

    @property
    def hard(self) -> np.ndarray:
        return self.targets.argmax(axis=1)

    def subset(self, index: np.ndarray) -> Table:
        def pick(values: list[Any] | None) -> list[Any] | None:
            return None if values is None else [values[i] for i in index]

        return replace(self, files=[self.files[i] for i in index], targets=self.targets[index],
                       speakers=pick(self.speakers), parts=pick(self.parts))


def _read(path: Path) -> Any:
    import pandas as pd

    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)


def read_table(path: str | Path, audio_dir: str | Path, *, file_column: str = "file",
               label_column: str | None = None, soft_label_column: str | None = None,
               labels: list[str] | None = None, speaker_column: str | None = None,
               split_column: str | None = None) -> Table:
    """Read a table with a file column and a label column or a soft-label column.

    ``soft_label_column`` holds a list per row (JSON text in a CSV) in the order of
    ``labels``, or is ``p_*`` to take the ``p_LABEL`` columns that llm_annotator writes.
    A hard ``label_column`` becomes one-hot targets. ``split_column`` holds train, val or
    test per row.
    """
    frame = _read(Path(path))
    for column in [file_column, label_column, speaker_column, split_column]:
        if column and column not in frame.columns:
            raise SystemExit(f"{path}: no column {column!r}; columns are {', '.join(map(str, frame.columns))}")
    if (label_column is None) == (soft_label_column is None):
        raise SystemExit("give exactly one of --label-column and --soft-label-column")
    if soft_label_column == "p_*":
        columns = [c for c in frame.columns if str(c).startswith("p_")]
        labels = [c[2:] for c in columns]
        targets = frame[columns].to_numpy(dtype=float)
    elif soft_label_column is not None:
        if labels is None:
            raise SystemExit("--soft-label-column needs --labels (the order of the vectors)")
        values = [json.loads(v) if isinstance(v, str) else list(v) for v in frame[soft_label_column]]
        targets = np.array(values, dtype=float)
        if targets.shape[1] != len(labels):
            raise SystemExit(f"soft labels have {targets.shape[1]} entries, --labels names {len(labels)}")
    else:
        assert label_column is not None
        names = frame[label_column].astype(str).str.strip()
        labels = labels or sorted(names.unique())
        unknown = sorted(set(names) - set(labels))
        if unknown:
            keep = names.isin(labels).to_numpy()
            frame, names = frame[keep], names[keep]
        index = {label: k for k, label in enumerate(labels)}
        targets = np.zeros((len(frame), len(labels)))
        targets[np.arange(len(frame)), [index[n] for n in names]] = 1.0
    targets = np.nan_to_num(targets)
    sums = targets.sum(axis=1, keepdims=True)
    keep = sums[:, 0] > 0
    targets = targets[keep] / sums[keep]
    frame = frame[keep]
    if len(frame) == 0:
        raise SystemExit(f"{path}: no rows with a usable label")
    files = [Path(audio_dir) / str(f) for f in frame[file_column]]
    speakers = frame[speaker_column].astype(str).tolist() if speaker_column else None
    parts = frame[split_column].astype(str).tolist() if split_column else None
    return Table(files, targets, list(labels or []), speakers, parts)


def add_table_arguments(parser: Any, *, speaker_required: bool = False, run: bool = False) -> None:
    """The options that name a table of clips and labels (shared by every SER command).

    ``run=True`` (train): ``--run`` (an llm_annotator run directory) and ``--output`` may
    take the table's place.
    """
    if run:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--table", help="CSV/JSONL/Parquet with a file column and labels")
        source.add_argument("--run", help="an llm_annotator run directory (annotate --out): its items name the "
                            "clips, one of its outputs gives the targets")
        parser.add_argument("--file-template", help="with --run: each clip's file built from its item's columns, "
                            "e.g. 'dia{Dialogue_ID}_utt{Utterance_ID}.wav' (instead of --file-column)")
        parser.add_argument("--output", help="with --run: the output to train on (default: the run's primary "
                            "output); categorical and ordinal outputs train a classifier, numeric ones a regressor")
    else:
        parser.add_argument("--table", required=True, help="CSV/JSONL/Parquet with a file column and labels")
    parser.add_argument("--audio-dir", required=True, help="folder the file column is relative to")
    parser.add_argument("--file-column", default="file")
    parser.add_argument("--label-column", help="hard labels")
    parser.add_argument("--soft-label-column", help="soft-label vectors (list per row), or p_* for p_LABEL columns")
    parser.add_argument("--labels", help="comma-separated label order of the soft-label vectors")
    parser.add_argument("--speaker-column", required=speaker_required, help="split by speakers")


def table_from_arguments(args: Any) -> Table:
    speaker_column, split_column = getattr(args, "speaker_column", None), getattr(args, "split_column", None)
    if getattr(args, "run", None):
        from .runs import read_run

        given = [flag for flag, value in (("--label-column", args.label_column),
                                          ("--soft-label-column", args.soft_label_column),
                                          ("--labels", args.labels)) if value]
        if given:
            raise SystemExit(f"{', '.join(given)}: for --table only; with --run the targets come from the run's "
                             "output (choose it with --output)")
        return read_run(args.run, args.audio_dir, output=args.output, file_column=args.file_column,
                        file_template=args.file_template, speaker_column=speaker_column, split_column=split_column)
    for flag in ("output", "file_template"):
        if getattr(args, flag, None):
            raise SystemExit(f"--{flag.replace('_', '-')} is for a run: give the run directory with --run "
                             "(a --table takes --file-column and --label-column or --soft-label-column)")
    return read_table(args.table, args.audio_dir, file_column=args.file_column, label_column=args.label_column,
                      soft_label_column=args.soft_label_column,
                      labels=args.labels.split(",") if args.labels else None,
                      speaker_column=speaker_column, split_column=split_column)


def load_audio(path: Path, normalise: bool = True) -> np.ndarray:
    """Mono float32 at 16 kHz, normalised to zero mean and unit variance per utterance.

    ``normalise=False`` keeps the level: loudness is a cue that hand-made features use.
    """
    with ser_extra():
        import soundfile
        from scipy.signal import resample_poly

    wave, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = math.gcd(rate, SAMPLE_RATE)
        wave = resample_poly(wave, SAMPLE_RATE // g, rate // g).astype(np.float32)
    if not normalise:
        return wave.astype(np.float32)
    return ((wave - wave.mean()) / (wave.std() + 1e-7)).astype(np.float32)


def speaker_folds(speakers: list[str], *, n_val: int = 1, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Leave-one-speaker-out: for each speaker, (train, validation, test) indices.

    The validation speakers are the next ``n_val`` speakers in a seeded order; no speaker
    is ever in two parts of one fold.
    """
    names = sorted(set(speakers))
    order = list(np.random.default_rng(seed).permutation(names))
    spk = np.array(speakers)
    folds = []
    for i, test in enumerate(order):
        val = [order[(i + 1 + j) % len(order)] for j in range(n_val)]
        test_idx = np.flatnonzero(spk == test)
        val_idx = np.flatnonzero(np.isin(spk, val))
        train_idx = np.flatnonzero(~np.isin(spk, [test, *val]))
        folds.append((train_idx, val_idx, test_idx))
    return folds


def random_split(n: int, *, seed: int = 0, val: float = 0.1, test: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = round(n * test), round(n * val)
    return order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test]
