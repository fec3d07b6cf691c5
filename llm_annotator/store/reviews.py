"""What people said about a run's items, beside the run: human votes and review rounds.

Two files of the run directory, apart from ``votes.jsonl`` on purpose: a re-run of the
job checks every vote of ``votes.jsonl`` against the request it would send now, and a
human answer has no request. Human labels are about items, not about models, so
``--overwrite`` (a new job over the same items) keeps them::

    RUN_DIR/
      human_votes.jsonl    one vote per (item, reviewer): annotator ``human:NAME``, sample 0
      review_rounds.jsonl  one line per export for review: strategy, seed, the items chosen
                           and, for random designs, each item's inclusion probability

Both are rewritten whole (:func:`~llm_annotator.store.files.write_atomic`): an import
adds every answer of a file or none.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llm_annotator.core.errors import RunDirError
from llm_annotator.core.votes import Vote
from llm_annotator.store.files import write_atomic

HUMAN_VOTES = "human_votes.jsonl"
REVIEW_ROUNDS = "review_rounds.jsonl"
#: The annotator name of a reviewer: ``human:`` and the name.
HUMAN_PREFIX = "human:"


def is_human(annotator: str) -> bool:
    return annotator.startswith(HUMAN_PREFIX)


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise RunDirError(f"{path}, line {number}: not JSON",
                                  fix="restore the file from a backup, or remove the line") from None
    return records


def read_human_votes(run: str | Path) -> list[Vote]:
    """The human votes recorded in a run directory (none when there is no file)."""
    path = Path(run) / HUMAN_VOTES
    try:
        return [Vote.from_mapping(record) for record in _lines(path)]
    except TypeError:
        raise RunDirError(f"{path}: a line lacks a field of a vote",
                          fix="restore the file from a backup, or import the reviews again") from None


def merge_human_votes(run: str | Path, votes: Iterable[Vote]) -> dict[str, int]:
    """Record ``votes`` by (item, reviewer): a new key is added, a changed answer replaces
    the recorded one (the later export wins), the same answer again changes nothing.

    Returns the counts ``added``, ``updated``, ``unchanged``.
    """
    path = Path(run) / HUMAN_VOTES
    recorded = {(v.item_id, v.annotator): v for v in read_human_votes(run)}
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    for vote in votes:
        key = (vote.item_id, vote.annotator)
        old = recorded.get(key)
        if old is None:
            counts["added"] += 1
        elif (old.label, old.error) == (vote.label, vote.error):  # "Positive" again is the same answer
            counts["unchanged"] += 1
            continue
        else:
            counts["updated"] += 1
        recorded[key] = vote
    if counts["added"] or counts["updated"]:
        write_atomic(path, "".join(v.to_json() + "\n" for v in recorded.values()))
    return counts


def read_rounds(run: str | Path) -> list[dict[str, Any]]:
    """The review rounds exported from a run, oldest first."""
    path = Path(run) / REVIEW_ROUNDS
    rounds = _lines(path)
    for number, record in enumerate(rounds, 1):
        if not (isinstance(record, dict) and isinstance(record.get("items"), dict)):
            raise RunDirError(f"{path}, round {number}: not a review round (an object with its items)",
                              fix="restore the file from a backup, or remove the line")
    return rounds


def append_round(run: str | Path, record: dict[str, Any]) -> int:
    """Record one export for review; returns its round number (1, 2, …)."""
    rounds = read_rounds(run)
    record = {"round": len(rounds) + 1, **record}
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [*rounds, record])
    write_atomic(Path(run) / REVIEW_ROUNDS, text)
    return int(record["round"])


__all__ = ["HUMAN_PREFIX", "HUMAN_VOTES", "REVIEW_ROUNDS", "append_round", "is_human", "merge_human_votes",
           "read_human_votes", "read_rounds"]
