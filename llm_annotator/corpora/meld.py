"""MELD (Poria et al., ACL 2019) and the MELT subset of it (Jing et al. 2025).

``load_meld`` reads an official split CSV (``train_sent_emo.csv``, ``dev_sent_emo.csv``,
``test_sent_emo.csv``, published in ``data/MELD`` of https://github.com/declare-lab/MELD)
from a folder, or from any base address pandas can read, and adds:

* ``clip`` — ``dia{Dialogue_ID}_utt{Utterance_ID}``, the name of the clip's audio file
  without extension, as in MELD's ``MELD.Raw`` archives and MELT's ``filename`` column;
* ``duration_s`` — ``EndTime − StartTime`` (subtitle times ``HH:MM:SS,mmm``);
* ``n_words`` — whitespace-separated words of the utterance.

Rows sharing ``Dialogue_ID`` form a scene ordered by ``Utterance_ID``: pass
``context=K`` to ``annotate`` (or use ``emotion_context``) for the previous turns.

``melt_subset`` is MELT's filter as a function with parameters: main speakers only,
clips of at least ``min_duration_s`` seconds, utterances of at least ``min_words`` words.
With the defaults it reproduces MELT's released train subset (7,024 rows) with
precision 0.9943 and recall 1.0000 on MELD train (tests/test_meld.py; docs/melt.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llm_annotator.core.errors import DataError

SPLITS = {"train": "train_sent_emo.csv", "dev": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}
#: Where the official split CSVs are published: this folder of this repository.
MELD_REPOSITORY = "https://github.com/declare-lab/MELD"
MELD_SOURCE = "data/MELD"
EMOTIONS = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")

#: The 42 speakers of MELT's released train subset (lower case; matched case-insensitively).
MELT_SPEAKERS = frozenset({
    "barry", "carol", "cassie", "chandler", "charlie", "chip", "danny", "david", "dina", "doug",
    "dr. green", "earl", "elizabeth", "emily", "eric", "frank", "gunther", "janice", "joanna", "joey",
    "julie", "julio", "kate", "katie", "mark", "mona", "monica", "mr. geller", "mr. treeger",
    "mr. tribbiani", "mrs. geller", "paul", "pete", "phoebe", "phoebe sr", "rachel", "richard", "ross",
    "russell", "susan", "tag", "woman",
})


def _seconds(stamp: Any) -> float:
    try:
        clock, millis = str(stamp).strip().split(",")
        hours, minutes, seconds = clock.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000
    except ValueError:
        return float("nan")


def load_meld(source: str | Path, split: str = "train") -> Any:
    """One MELD split as a DataFrame with ``clip``, ``duration_s`` and ``n_words`` added."""
    import pandas as pd

    if split not in SPLITS:
        raise DataError(f"unknown MELD split {split!r}", fix=f"use one of {', '.join(SPLITS)}")
    text = str(source)
    location: str | Path = (text.rstrip("/") + "/" + SPLITS[split]) if "://" in text else Path(source) / SPLITS[split]
    if isinstance(location, Path) and not location.is_file():
        raise DataError(f"{location} does not exist",
                        fix=f"point to the folder holding MELD's CSVs ({', '.join(SPLITS.values())}): "
                            f"{MELD_SOURCE} in {MELD_REPOSITORY}")
    frame = pd.read_csv(location, encoding="utf-8-sig")
    needed = {"Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID", "StartTime", "EndTime"}
    missing = sorted(needed - set(frame.columns))
    if missing:
        raise DataError(f"{location}: not a MELD split, column {missing[0]!r} is missing",
                        fix="use the official *_sent_emo.csv files")
    frame["clip"] = "dia" + frame["Dialogue_ID"].astype(str) + "_utt" + frame["Utterance_ID"].astype(str)
    frame["duration_s"] = frame["EndTime"].map(_seconds) - frame["StartTime"].map(_seconds)
    frame["n_words"] = [len(str(u).split()) for u in frame["Utterance"]]
    return frame


def melt_subset(frame: Any, *, speakers: Iterable[str] | None = MELT_SPEAKERS, min_duration_s: float = 0.95,
                min_words: int = 3) -> Any:
    """The rows MELT kept: named main speakers, clips ≥ ``min_duration_s``, ≥ ``min_words`` words.

    ``speakers=None`` keeps every speaker. MELT describes its clips as "about 1 s or
    longer"; 0.95 s is the threshold that reproduces its released subset.
    """
    keep = (frame["duration_s"] >= min_duration_s) & (frame["n_words"] >= min_words)
    if speakers is not None:
        names = {s.lower() for s in speakers}
        keep &= frame["Speaker"].astype(str).str.strip().str.lower().isin(names)
    return frame[keep].reset_index(drop=True)


def subset_match(selected: Any, reference: Any) -> dict[str, float]:
    """Precision and recall of ``selected`` against ``reference``, keyed by dialogue/utterance id."""
    def keys(df: Any) -> set[tuple[int, int]]:
        return set(zip(df["Dialogue_ID"].astype(int), df["Utterance_ID"].astype(int), strict=True))

    got, want = keys(selected), keys(reference)
    both = len(got & want)
    return {"selected": len(got), "reference": len(want), "matched": both,
            "precision": both / len(got) if got else float("nan"),
            "recall": both / len(want) if want else float("nan")}


__all__ = ["EMOTIONS", "MELD_REPOSITORY", "MELD_SOURCE", "MELT_SPEAKERS", "SPLITS", "load_meld", "melt_subset",
           "subset_match"]
