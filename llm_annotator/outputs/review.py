"""The items people should check next, for the tools people already use, and the way back.

Out: ``review`` chooses ``n`` items not chosen before by a strategy of
:func:`~llm_annotator.analysis.selection.choose` (``random`` by default, so that the
answers stand for the corpus; ``interval``: at random, weighted towards uncertain items;
or ``confidence`` and ``disagreement``, which find errors but are no sample of the
corpus), records the choice in the run's ``review_rounds.jsonl``, and writes a CSV
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
    "random": "a simple random sample (valid for corpus estimates)",
    "interval": "drawn at random, weighted towards uncertain items (valid for corpus estimates)",
    "confidence": "lowest consensus confidence first (finds errors; no sample of the corpus)",
    "disagreement": "most disagreement between annotators first (finds errors; no sample of the corpus)",
}


def next_items(result: Any, n: int, *, strategy: str = "random", seed: int | None = None) -> Any:
    """The :class:`~llm_annotator.analysis.selection.Selection` of the next ``n`` items.

    Items already reviewed (a ``human:`` vote) are never chosen again, nor are items
    waiting in an earlier round of the same kind: a random round (``random``,
    ``interval``) leaves out the items of earlier random rounds, so that those rounds
    are one sample drawn without replacement; a chosen round (``confidence``,
    ``disagreement``) leaves out every earlier round's items. A random round does not
    leave out the unanswered items of a chosen round: what people answered of a chosen
    round is a stratum of its own (inclusion probability 1), and the random rounds stand
    for everything else. ``seed`` defaults to the number of earlier rounds.
    """
    from llm_annotator.analysis.selection import choose
    from llm_annotator.outputs.trust import disagreement, one_label_per_item
    from llm_annotator.store.reviews import is_human, read_rounds

    one_label_per_item(result, "review")
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown review strategy {strategy!r}", fix=f"use one of {', '.join(STRATEGIES)}")
    rounds = read_rounds(result.run_dir) if result.run_dir is not None else []
    if seed is None:
        seed = len(rounds)
    if seed < 0:
        raise ConfigError(f"seed {seed} is negative", fix="pass --seed 0 or more (or leave it out)")
    models = result.models_only()
    order = result.items["item_id"].tolist()
    done = set(result.votes.loc[result.votes["annotator"].map(is_human), "item_id"])
    drawn_at_random = strategy in ("random", "interval")
    for record in rounds:
        if not drawn_at_random or record.get("strategy") in ("random", "interval"):
            done.update(record["items"])
    exclude = [i for i, item in enumerate(order) if item in done]
    if len(exclude) == len(order):
        raise ConfigError(f"every item of the run was reviewed or chosen in one of its {len(rounds)} review rounds",
                          fix="import the answers of the last rounds ('review RUN --import FILE'); nothing is "
                              "left to choose")
    consensus = models.labels()
    probs = consensus[[f"p_{x}" for x in result.labels_order]].to_numpy(dtype=float)
    return choose(strategy, n, confidence=consensus["confidence"].to_numpy(dtype=float),
                  disagreement=disagreement(models), probs=probs, exclude=exclude, seed=seed)


def review_queue(result: Any, n: int = 100, *, strategy: str = "random", seed: int | None = None) -> Any:
    """The ``n`` items to review next (:func:`next_items`), with inputs, the models'
    consensus, each model's label and, for the random strategies, each item's inclusion
    probability. Input columns whose names the queue uses get ``input_`` in front. The
    random strategies list their items in a random order: a reviewer who stops halfway
    leaves a random sample, not the first items of the corpus."""
    from llm_annotator.analysis.agreement import annotator_labels

    chosen = next_items(result, n, strategy=strategy, seed=seed)
    models = result.models_only()
    order = result.items["item_id"].tolist()
    table = annotator_labels(models.votes, result.task.labels, order)
    consensus = models.labels()
    added = [*consensus.columns, *(f"label_{name}" for name in table.columns), "annotators_disagree",
             "inclusion_probability", "review_label"]
    names: dict[str, str] = {}
    for column in result.items.columns[1:]:
        name = str(column)
        while name in added or name in names.values():
            name = f"input_{name}"
        names[column] = name
    frame = result.items.rename(columns=names).merge(consensus, on="item_id")
    for name in table.columns:
        frame[f"label_{name}"] = table[name].reindex(order).to_numpy()
    frame["annotators_disagree"] = table.nunique(axis=1, dropna=True).reindex(order).to_numpy() > 1
    rows = list(chosen.indices)
    inclusion = list(chosen.inclusion) if chosen.inclusion is not None else None
    if inclusion is not None:
        import numpy as np

        shuffled = np.random.default_rng([seed if seed is not None else 0, 1]).permutation(len(rows))
        rows, inclusion = [rows[k] for k in shuffled], [inclusion[k] for k in shuffled]
    queue = frame.iloc[rows].reset_index(drop=True)
    queue["inclusion_probability"] = inclusion
    queue.attrs.update(strategy=strategy, eligible=chosen.n_eligible, renamed=names,
                       seed=seed if seed is not None else None)
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
                  strategy: str = "random", seed: int | None = None) -> list[Path]:
    """Write ``PREFIX.csv`` and ``PREFIX.label_studio.json`` of the items :func:`review_queue`
    chooses, and record the round in the run directory (under its lock); return the two
    paths. A CSV there whose ``review_label`` holds answers not imported yet is not
    overwritten."""
    import contextlib

    from llm_annotator.store.reviews import append_round, read_rounds
    from llm_annotator.store.rundir import RunDir

    prefix = Path(prefix)
    csv_path = prefix.with_name(prefix.name + ".csv")
    json_path = prefix.with_name(prefix.name + ".label_studio.json")
    lock = RunDir(result.run_dir).open() if result.run_dir is not None else contextlib.nullcontext()
    with lock:
        _refuse_unimported(result, csv_path)
        if seed is None:
            seed = len(read_rounds(result.run_dir)) if result.run_dir is not None else 0
        queue = review_queue(result, n, strategy=strategy, seed=seed)
        inputs = [str(c) for c in result.items.columns[1:]]
        if text_column is None:
            text_column = next((c for c in inputs if c.lower() in ("utterance", "text", "sentence")),
                               inputs[0] if inputs else "item_id")
        if text_column not in inputs and text_column != "item_id":
            raise ConfigError(f"text column {text_column!r} is not an input column",
                              fix=f"use one of {', '.join(inputs)}")
        text_column = queue.attrs["renamed"].get(text_column, text_column)
        from llm_annotator.outputs.tables import safe_cell

        table = queue.copy()
        table["review_label"] = ""  # the reviewer's answer: 'llm-annotator review RUN --import review.csv'
        for column in table.columns:
            if table[column].dtype == object or str(table[column].dtype) in ("str", "string"):
                table[column] = table[column].map(safe_cell)
        tasks = label_studio_tasks(queue, list(result.task.labels), text_column)
        write_atomic(csv_path, table.to_csv(index=False))
        write_atomic(json_path, json.dumps(tasks, indent=2, ensure_ascii=False) + "\n")
        if result.run_dir is not None:
            probabilities = queue["inclusion_probability"].tolist()
            append_round(result.run_dir, {
                "strategy": strategy, "seed": seed, "n": len(queue), "eligible": queue.attrs["eligible"],
                "n_items": len(result.items),
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "items": {str(item): (None if p is None or p != p else float(p))
                          for item, p in zip(queue["item_id"], probabilities, strict=True)}})
    return [csv_path, json_path]


def _refuse_unimported(result: Any, csv_path: Path) -> None:
    """A review CSV with answers that are not votes of the run yet is not overwritten."""
    import pandas as pd

    from llm_annotator.store.reviews import is_human

    if not csv_path.is_file():
        return
    elsewhere = "or write this round elsewhere with --out"
    try:
        sheet = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, ValueError):
        raise ConfigError(f"{csv_path} exists and cannot be read to see whether it holds answers",
                          fix=f"move it away (a spreadsheet may have saved it in another format), {elsewhere}") from None
    if not {"item_id", "review_label"} <= set(sheet.columns):
        raise ConfigError(f"{csv_path} exists and is not a review sheet (item_id and review_label)",
                          fix=f"move it away, {elsewhere}")
    people = result.votes[result.votes["annotator"].map(is_human)]
    answered = {(item, str(raw).strip().lower()) for item, raw in zip(people["item_id"], people["raw"], strict=True)}
    known = set(result.items["item_id"].astype(str))
    waiting = [item for item, answer in zip(sheet["item_id"], sheet["review_label"], strict=True)
               if answer.strip() and (_item(item, known), answer.strip().lower()) not in answered]
    if waiting:
        raise ConfigError(f"{csv_path} holds {len(waiting)} answers that are not imported yet",
                          fix=f"import them first (llm-annotator review RUN --import {csv_path} --reviewer NAME), "
                              f"{elsewhere}")


def _item(text: str, known: set[str]) -> str:
    """An item id as the review CSV wrote it, back: without the ``'`` that keeps a
    spreadsheet from reading ``=…``, ``+…``, ``-…``, ``@…`` as a formula."""
    if text not in known and text.startswith("'") and text[1:] in known:
        return text[1:]
    return text


# -- the way back: reviewers' answers as human votes -------------------------------------
def _reviewer_name(name: Any, where: str) -> str:
    text = " ".join(str(name).split())
    if not text:
        raise DataError(f"{where}: the reviewer has no name", fix="pass --reviewer NAME (reviewer=)")
    return text


#: What a JSON-MIN record holds besides the answer: the annotation's fields and the task's data.
_JSON_MIN_FIELDS = {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "item_id", "text",
                    "soft_label"}


def _label_studio_user(user: Any) -> str:
    """One name per Label Studio user, whichever export: the Export button writes the
    user's id (``2``; ``"2"`` in its CSV), a snapshot export an object with the id and
    e-mail; both are ``label-studio-2``."""
    if isinstance(user, dict):
        user = user.get("id", user.get("email") or user.get("username"))
    if isinstance(user, int) or (isinstance(user, str) and user.strip().isdigit()):
        return f"label-studio-{int(user)}"
    return "" if user is None else str(user)  # no user named: --reviewer must say who


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
            controls = sorted(set(task) - _JSON_MIN_FIELDS)
            control = "label" if "label" in task else controls[0] if len(controls) == 1 else None
            if control is None and controls:
                raise DataError(f"{where}: which field holds the answer is unclear ({', '.join(controls)})",
                                fix="name the Choices control 'label' in the labelling interface, or export JSON")
            text = task.get(control) if control else None
            if isinstance(text, dict):  # a multi-choice control: {"choices": [...]}
                text = text.get("choices")
            if text not in (None, "", []):
                text = ",".join(map(str, text)) if isinstance(text, list) else str(text)
                order = (str(task.get("updated_at") or task.get("created_at") or ""), task.get("annotation_id") or 0)
                key = (str(item_id), _label_studio_user(task.get("annotator")))
                if key not in answers or order >= answers[key][0]:
                    answers[key] = (order, text, where)
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
    if {"annotator", "annotation_id"} <= set(table.columns) and label_column not in table.columns:
        controls = sorted(set(table.columns) - _JSON_MIN_FIELDS)  # Label Studio's CSV export
        label_column = "label" if "label" in table.columns else controls[0] if len(controls) == 1 else label_column
        table["reviewer"] = table["annotator"].map(_label_studio_user)
    if reviewer is not None and "reviewer" in table.columns:
        people = table.loc[table["reviewer"].str.strip() != "", "reviewer"].nunique()
        if people > 1:
            raise ConfigError(f"{path} holds the answers of {people} people; --reviewer would merge them into one",
                              fix="leave --reviewer out")
    for needed in ("item_id", label_column):
        if needed not in table.columns:
            raise DataError(f"{path}: no column {needed!r}",
                            fix="fill the review_label column of the review.csv that 'llm-annotator review' "
                                "wrote, or name the column of answers with --label-column")
    if reviewer is None and "reviewer" not in table.columns:
        raise DataError(f"{path}: who reviewed is not said", fix="pass --reviewer NAME (reviewer=), "
                                                                  "or add a reviewer column")
    rows = []
    seen: dict[tuple[str, str], int] = {}
    for number, row in enumerate(table.to_dict(orient="records"), 2):
        text = row[label_column].strip()
        if text:
            who = reviewer if reviewer is not None else row["reviewer"]
            if (row["item_id"], who) in seen:
                raise DataError(f"{path}, rows {seen[(row['item_id'], who)]} and {number}: two answers of one "
                                f"reviewer for item {row['item_id']!r}", fix="keep one of the two rows")
            seen[(row["item_id"], who)] = number
            rows.append((row["item_id"], who, text, f"{path}, row {number}"))
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
    from llm_annotator.outputs.trust import one_label_per_item, write_labels
    from llm_annotator.store.reviews import HUMAN_PREFIX, merge_human_votes
    from llm_annotator.store.rundir import RunDir

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist", fix="name the file of the reviewers' answers")
    result = AnnotationResult.load(run_dir)
    one_label_per_item(result, "review")
    if path.suffix.lower() == ".json":
        answers = read_label_studio(path)
        people = sorted({user for _, user, _, _ in answers if user})
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
        item = _item(item, known)
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
