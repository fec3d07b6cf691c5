"""The items people should check next, for the tools people already use, and the way back.

Out: ``review`` chooses ``n`` items not reviewed yet by a strategy of
:func:`~llm_annotator.analysis.selection.choose` (``interval`` by default: drawn at
random, weighted towards uncertain items, so that the answers may stand for the corpus;
``random``; or ``confidence`` and ``disagreement``, which find errors but are no sample
of the corpus), records the choice in the run's ``review_rounds.jsonl``, and writes a CSV
(with an empty ``review_label`` column for the reviewer) and Label Studio tasks with
predictions (the consensus label as a ``choices`` result, its probability as ``score``).

Back: :func:`import_reviews` reads a Label Studio export or the filled CSV into the run as
votes of ``human:NAME`` annotators (:mod:`llm_annotator.store.reviews`).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from llm_annotator.core.errors import ConfigError, DataError
from llm_annotator.store.files import write_atomic

#: What each strategy means, as ``review`` says it.
STRATEGIES = {
    "interval": "drawn at random, weighted towards uncertain items (valid for corpus estimates)",
    "random": "a simple random sample (valid for corpus estimates)",
    "confidence": "lowest consensus confidence first (finds errors; no sample of the corpus)",
    "disagreement": "most disagreement between annotators first (finds errors; no sample of the corpus)",
}


def review_queue(result: Any, n: int = 100, *, strategy: str = "interval", seed: int | None = None) -> Any:
    """The ``n`` items to review next by ``strategy``, with inputs, the models' consensus,
    each model's label and, for the random strategies, each item's inclusion probability.

    Items already reviewed (with a ``human:`` vote) are not chosen again. ``seed``
    defaults to the number of earlier review rounds, so each round draws anew."""
    from llm_annotator.analysis.agreement import annotator_labels
    from llm_annotator.analysis.selection import choose
    from llm_annotator.outputs.trust import disagreement
    from llm_annotator.store.reviews import is_human, read_rounds

    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown review strategy {strategy!r}", fix=f"use one of {', '.join(STRATEGIES)}")
    if seed is None:
        seed = len(read_rounds(result.run_dir)) if result.run_dir is not None else 0
    models = result.models_only()
    order = result.items["item_id"].tolist()
    table = annotator_labels(models.votes, result.task.labels, order)
    consensus = models.labels()
    frame = result.items.merge(consensus, on="item_id")
    for name in table.columns:
        frame[f"label_{name}"] = table[name].reindex(order).to_numpy()
    frame["annotators_disagree"] = table.nunique(axis=1, dropna=True).reindex(order).to_numpy() > 1
    done = set(result.votes.loc[result.votes["annotator"].map(is_human), "item_id"])
    probs = consensus[[f"p_{x}" for x in result.labels_order]].to_numpy(dtype=float)
    chosen = choose(strategy, n, confidence=consensus["confidence"].to_numpy(dtype=float),
                    disagreement=disagreement(models), probs=probs,
                    exclude=[i for i, item in enumerate(order) if item in done], seed=seed)
    queue = frame.iloc[list(chosen.indices)].reset_index(drop=True)
    queue["inclusion_probability"] = list(chosen.inclusion) if chosen.inclusion is not None else None
    queue.attrs.update(strategy=strategy, seed=seed, eligible=chosen.n_eligible)
    return queue


def label_studio_tasks(queue: Any, labels: list[str], text_column: str) -> list[dict[str, Any]]:
    """Label Studio tasks with predictions (import with a Choices control named ``label``)."""
    tasks = []
    for _, row in queue.iterrows():
        prediction: dict[str, Any] = {"model_version": "llm_annotator", "result": []}
        if isinstance(row["label"], str):
            prediction["score"] = float(row["confidence"])
            prediction["result"] = [{"from_name": "label", "to_name": "text", "type": "choices",
                                     "value": {"choices": [row["label"]]}}]
        tasks.append({
            "data": {"text": str(row[text_column]), "item_id": str(row["item_id"]),
                     "soft_label": {label: _float(row[f"p_{label}"]) for label in labels}},
            "predictions": [prediction],
        })
    return tasks


def _float(value: Any) -> float | None:
    value = float(value)
    return None if value != value else value


def export_review(result: Any, prefix: str | Path, *, n: int = 100, text_column: str | None = None,
                  strategy: str = "interval", seed: int | None = None) -> list[Path]:
    """Write ``PREFIX.csv`` and ``PREFIX.label_studio.json`` of the items :func:`review_queue`
    chooses, and record the round in the run directory; return the two paths."""
    from llm_annotator.store.reviews import append_round

    queue = review_queue(result, n, strategy=strategy, seed=seed)
    inputs = [c for c in result.items.columns if c != "item_id"]
    if text_column is None:
        text_column = next((c for c in inputs if c.lower() in ("utterance", "text", "sentence")),
                           inputs[0] if inputs else "item_id")
    if text_column not in queue.columns:
        raise ConfigError(f"text column {text_column!r} is not an input column",
                          fix=f"use one of {', '.join(inputs)}")
    prefix = Path(prefix)
    csv_path = prefix.with_name(prefix.name + ".csv")
    from llm_annotator.outputs.tables import safe_cell

    table = queue.copy()
    table["review_label"] = ""  # the reviewer's answer: 'llm-annotator review RUN --import review.csv'
    for column in table.columns:
        if table[column].dtype == object or str(table[column].dtype) in ("str", "string"):
            table[column] = table[column].map(safe_cell)
    write_atomic(csv_path, table.to_csv(index=False))
    json_path = prefix.with_name(prefix.name + ".label_studio.json")
    tasks = label_studio_tasks(queue, list(result.task.labels), text_column)
    write_atomic(json_path, json.dumps(tasks, indent=2, ensure_ascii=False) + "\n")
    if result.run_dir is not None:
        probabilities = queue["inclusion_probability"].tolist()
        append_round(result.run_dir, {
            "strategy": strategy, "seed": queue.attrs["seed"], "n": len(queue), "eligible": queue.attrs["eligible"],
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "items": {str(item): (None if p is None or p != p else float(p))
                      for item, p in zip(queue["item_id"], probabilities, strict=True)}})
    return [csv_path, json_path]


# -- the way back: reviewers' answers as human votes -------------------------------------
def _reviewer_name(name: Any, where: str) -> str:
    text = " ".join(str(name).split())
    if not text:
        raise DataError(f"{where}: the reviewer has no name", fix="pass --reviewer NAME (reviewer=)")
    return text


def _label_studio_user(user: Any) -> str:
    """One name per Label Studio user, whichever export: the Export button writes the
    user's id (``2``; ``"2"`` in its CSV), a snapshot export an object with the id and
    e-mail; both are ``label-studio-2``."""
    if isinstance(user, dict):
        user = user.get("id", user.get("email") or user.get("username"))
    if isinstance(user, int) or (isinstance(user, str) and user.strip().isdigit()):
        return f"label-studio-{int(user)}"
    return str(user)


def _choice_text(results: list[Any]) -> str | None:
    """The chosen label of one Label Studio annotation (a ``choices`` result), else None."""
    chosen = [r for r in results if isinstance(r, dict) and r.get("type") == "choices"]
    named = [r for r in chosen if r.get("from_name") == "label"] or chosen
    if not named:
        return None
    choices = (named[0].get("value") or {}).get("choices") or []
    return ",".join(map(str, choices)) if choices else None


def read_label_studio(path: Path) -> list[tuple[str, str, str, str]]:
    """(item_id, reviewer, answer, where) of every submitted annotation in a Label Studio
    export: the JSON export (tasks with ``annotations``) or JSON-MIN (one flat record per
    annotation). Cancelled and empty annotations are no answer; of several annotations of
    one task by one person, the last updated counts."""
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a Label Studio JSON export ({exc})",
                        fix="export the project as JSON (or JSON-MIN) in Label Studio") from None
    if not isinstance(tasks, list):
        raise DataError(f"{path}: a Label Studio export is a list of tasks",
                        fix="export the project as JSON (or JSON-MIN) in Label Studio")
    answers: dict[tuple[str, str], tuple[Any, str, str]] = {}
    for number, task in enumerate(tasks, 1):
        where = f"{path}, task {task.get('id', number) if isinstance(task, dict) else number}"
        if not isinstance(task, dict):
            raise DataError(f"{where}: not a task object", fix="export the project as JSON in Label Studio")
        data = task.get("data", task)
        item_id = data.get("item_id") if isinstance(data, dict) else None
        if item_id is None:
            raise DataError(f"{where}: no item_id in the task's data",
                            fix="import into Label Studio the tasks that 'llm-annotator review' wrote")
        if "annotations" not in task:  # JSON-MIN: the choice under the control's name
            text = task.get("label")
            if text not in (None, "", []):
                text = ",".join(map(str, text)) if isinstance(text, list) else str(text)
                answers[(str(item_id), _label_studio_user(task.get("annotator")))] = (
                    task.get("updated_at") or task.get("annotation_id") or number, text, where)
            continue
        for annotation in task.get("annotations") or []:
            if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
                continue
            text = _choice_text(annotation.get("result") or [])
            if text is None:
                continue
            key = (str(item_id), _label_studio_user(annotation.get("completed_by")))
            order = (str(annotation.get("updated_at") or annotation.get("created_at") or ""),
                     annotation.get("id") or 0)
            if key not in answers or order >= answers[key][0]:
                answers[key] = (order, text, where)
    return [(item, user, text, where) for (item, user), (_, text, where) in answers.items()]


def read_review_csv(path: Path, *, reviewer: str | None,
                    label_column: str = "review_label") -> list[tuple[str, str, str, str]]:
    """(item_id, reviewer, answer, where) of every filled ``label_column`` cell of a CSV:
    the ``review.csv`` this module writes, with the reviewers' column filled in (the
    reviewer is ``reviewer``, else a ``reviewer`` column), or Label Studio's CSV export
    (answers in ``label``, one reviewer per ``annotator`` id)."""
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the CSV ({exc})", fix="save the reviewed table as UTF-8 CSV") from None
    if {"annotator", "annotation_id", "label"} <= set(table.columns) and label_column not in table.columns:
        if reviewer is not None and table["annotator"].nunique() > 1:
            raise ConfigError(f"{path} holds the answers of {table['annotator'].nunique()} people; --reviewer "
                              f"would merge them into one", fix="leave --reviewer out")
        label_column = "label"
        table["reviewer"] = table["annotator"].map(_label_studio_user)
    for needed in ("item_id", label_column):
        if needed not in table.columns:
            raise DataError(f"{path}: no column {needed!r}",
                            fix="fill the review_label column of the review.csv that 'llm-annotator review' "
                                "wrote, or name the column of answers with --label-column")
    if reviewer is None and "reviewer" not in table.columns:
        raise DataError(f"{path}: who reviewed is not said", fix="pass --reviewer NAME (reviewer=), "
                                                                  "or add a reviewer column")
    rows = []
    for number, row in enumerate(table.to_dict(orient="records"), 2):
        text = row[label_column].strip()
        if text:
            where = f"{path}, row {number}"
            rows.append((row["item_id"], reviewer if reviewer is not None else row["reviewer"], text, where))
    return rows


def import_reviews(run_dir: str | Path, path: str | Path, *, reviewer: str | None = None,
                   label_column: str = "review_label") -> dict[str, Any]:
    """Record reviewers' answers as votes of annotators ``human:NAME`` in a run directory.

    ``path``: a Label Studio JSON or JSON-MIN export (``.json``), or a CSV with ``item_id``
    and ``label_column`` (rows left empty were not reviewed). In Label Studio each user is
    one reviewer; ``reviewer`` names the reviewer of a CSV (or of a one-person export). A
    second import of the same answers adds nothing; a changed answer replaces the old one.
    An answer outside the label set is kept as an invalid vote (``out_of_label_set``).
    Nothing is recorded when any answer names an item that is not in the run.
    Returns counts: ``added``, ``updated``, ``unchanged``, ``invalid``, ``reviewers``, and ``labels``
    (what :func:`~llm_annotator.outputs.trust.write_labels` wrote into labels.*).
    """
    from llm_annotator.outputs.columns import label_votes
    from llm_annotator.outputs.result import AnnotationResult
    from llm_annotator.outputs.trust import write_labels
    from llm_annotator.store.reviews import HUMAN_PREFIX, merge_human_votes
    from llm_annotator.store.rundir import RunDir

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist", fix="name the file of the reviewers' answers")
    result = AnnotationResult.load(run_dir)
    if path.suffix.lower() == ".json":
        answers = read_label_studio(path)
        people = sorted({user for _, user, _, _ in answers})
        if reviewer is not None and len(people) > 1:
            raise ConfigError(f"{path} holds the answers of {len(people)} people ({', '.join(people)}); "
                              f"--reviewer would merge them into one", fix="leave --reviewer out")
        if reviewer is not None:
            answers = [(item, reviewer, text, where) for item, _, text, where in answers]
    else:
        answers = read_review_csv(path, reviewer=reviewer, label_column=label_column)
    known = set(result.items["item_id"].astype(str))
    vote = label_votes(result.task)
    votes = []
    for item, user, text, where in answers:
        if item not in known:
            raise DataError(f"{where}: item {item!r} is not an item of the run {run_dir}",
                            fix="import the reviews of this run's own review export")
        name = HUMAN_PREFIX + _reviewer_name(user, where)
        votes.append(vote(item, name, text, "human"))
    with RunDir(run_dir).open():
        counts: dict[str, Any] = merge_human_votes(run_dir, votes)
        counts["labels"] = write_labels(run_dir)
    counts["invalid"] = sum(v.label is None for v in votes)
    counts["reviewers"] = sorted({v.annotator for v in votes})
    return counts


__all__ = ["export_review", "import_reviews", "label_studio_tasks", "read_label_studio", "read_review_csv",
           "review_queue"]
