"""The result of an annotation run: the votes table and everything derived from it.

How the labels files name, build and write an item's row: :mod:`llm_annotator.outputs.tables`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llm_annotator.analysis import aggregate
from llm_annotator.analysis.agreement import vs_gold as vs_gold_table
from llm_annotator.core.errors import ConfigError, RunDirError
from llm_annotator.core.task import Task
from llm_annotator.core.votes import output_frame, votes_frame
from llm_annotator.outputs.tables import (
    EXPLANATION_KEYS,
    LABEL_COLUMNS,
    explanation_fields,
    explanation_rows,
    explanation_table,
    group_columns,
    item_table,
    items_frame,
    json_cell,
    label_table,
    output_names,
    safe_cell,
    soft_label_columns,
    text_cell,
    write_csv_rows,
    write_jsonl_rows,
)
from llm_annotator.store.files import write_atomic
from llm_annotator.store.reviews import is_human, read_human_votes
from llm_annotator.store.votelog import read_votes


class AnnotationResult:
    """Votes of one run, with soft labels, consensus labels and exports.

    ``votes`` is the long table (one row per item, annotator and sample); every other
    figure is computed from it on demand.
    """

    def __new__(cls, votes: Any, task: Task, *args: Any, **kwargs: Any) -> AnnotationResult:
        """The result of a task whose primary output is ordinal, numeric or multi-label is of
        its kind's class (:data:`llm_annotator.outputs.kinds.RESULT_KINDS`)."""
        if cls is AnnotationResult and task.primary.kind != "categorical":
            from llm_annotator.outputs.kinds import RESULT_KINDS

            return super().__new__(RESULT_KINDS.get(task.primary.kind, cls))
        return super().__new__(cls)

    def __init__(self, votes: Any, task: Task, items: Any, *, samples: int,
                 annotators: Sequence[str], manifest: dict[str, Any] | None = None) -> None:
        self.votes = votes
        self.task = task
        self.items = items
        self.samples = samples
        self.annotators = list(annotators)
        self.manifest = manifest or {}
        self.run_dir: Path | None = None  # set by load(): where review rounds are recorded

    def __repr__(self) -> str:
        valid = int(self.votes["label"].notna().sum())
        return (f"<AnnotationResult task={self.task.name!r} items={len(self.items)} "
                f"annotators={self.annotators} votes={len(self.votes)} valid={valid}>")

    @property
    def labels_order(self) -> list[str]:
        return list(self.task.labels)

    # -- outputs -----------------------------------------------------------------------
    @property
    def output_names(self) -> list[str]:
        """The task's outputs, the primary first (this result is the primary's)."""
        return [spec.name for spec in self.task.output_specs]

    def output(self, name: str) -> AnnotationResult:
        """The result of one output of the task: its votes (label, value and error of that
        output), its categories as the label set, and the figures of its kind."""
        task = self.task.for_output(name)
        if name == self.task.primary.name and task is self.task:
            return self
        votes = output_frame(self.votes, self.task.primary.name, name)
        # an annotator whose task does not answer this output has no votes of it: it was not
        # asked, so it counts in neither the requests nor the agreement (one with no votes at
        # all is kept: nothing says it was not asked)
        present, voted = set(votes["annotator"]), set(self.votes["annotator"])
        return self.derive(votes, [a for a in self.annotators if a in present or a not in voted], task=task)

    def votes_by_output(self) -> Any:
        """Every output's votes in one long table: one row per item, annotator, output and
        sample, with that output's ``label``, ``value`` and ``error``. An answer's tokens
        and cost are on each of its rows: sum them over one output's rows."""
        import pandas as pd

        primary = self.task.primary.name
        frames = [output_frame(self.votes, primary, name) for name in self.output_names]
        return pd.concat(frames, ignore_index=True)

    def output_counts(self) -> dict[str, dict[str, Any]]:
        """Each output's valid votes and reasons by kind (``run.json``'s ``counts.by_output``),
        for a task with several outputs (empty for one)."""
        from llm_annotator.core.votes import error_counts

        if len(self.output_names) < 2:
            return {}
        return {name: {"votes": len(part), "valid": int(part["label"].notna().sum()),
                       "by_reason": error_counts(part["error"])}
                for name, part in self.votes_by_output().groupby("output", sort=False)}

    def outputs(self) -> dict[str, AnnotationResult]:
        """Every output's result (:meth:`output`), in the task's order."""
        return {name: self.output(name) for name in self.output_names}

    # -- soft labels and consensus -------------------------------------------------
    def soft_labels(self, *, by_annotator: bool = False, smoothing: float = 0.0) -> Any:
        """Item x label probabilities, combined across the models (or per annotator,
        reviewers included). Reviewers' votes (``human:``) never enter the combined soft
        label: it is what the models say, which the reviewers' labels are held against."""
        per = aggregate.soft_labels(self.votes, self.task.labels, smoothing=smoothing)
        if by_annotator:
            return per
        models = per[np.array([not is_human(a) for a in per.index.get_level_values("annotator")], dtype=bool)]
        return aggregate.combine(models, self.task.labels, self.items["item_id"].tolist())

    def labels(self, method: str = "mean", *, smoothing: float = 0.0) -> Any:
        """Consensus label per item with confidence, margin, entropy confidence, n_valid, n_requested.

        ``method="mean"`` takes the argmax of the combined soft label;
        ``method="majority"`` counts valid votes over all annotators and samples;
        ``method="dawid_skene"`` weighs every annotator, reviewers included, by its fitted
        confusion matrix. Mean and majority are the models' consensus: reviewers' votes
        (``human:``) are left out, as are they from ``n_valid`` and ``n_requested``.
        Ties go to the label listed first in the task.
        """
        import pandas as pd

        people = [a for a in self.annotators if is_human(a)]
        if people and method != "dawid_skene":
            return self.models_only().labels(method, smoothing=smoothing)
        order = self.items["item_id"].tolist()
        if method == "mean":
            probs = self.soft_labels(smoothing=smoothing)
        elif method == "dawid_skene":
            fit = self.dawid_skene()
            probs = pd.DataFrame(fit.posteriors, index=fit.items, columns=self.labels_order)
        elif method == "majority":
            valid, vectors = aggregate.vote_vectors(self.votes, self.task.labels)
            onehot = (vectors == vectors.max(axis=1, keepdims=True)).astype(float) if len(vectors) else vectors
            frame = pd.DataFrame(onehot, columns=self.labels_order)
            frame["item_id"] = valid["item_id"].to_numpy()
            sums = frame.groupby("item_id", sort=False)[self.labels_order].sum().reindex(order)
            probs = sums.div(sums.sum(axis=1), axis=0)
        else:
            raise ConfigError(f"unknown consensus method {method!r}", fix="use 'mean', 'majority' or 'dawid_skene'")
        votes = self.votes[~self.votes["annotator"].isin(people)] if people else self.votes
        n_valid = votes[votes["label"].notna()].groupby("item_id").size()
        return label_table(order, probs.to_numpy(dtype=float), n_valid.reindex(order).fillna(0).astype(int).to_numpy(),
                           self.samples * (len(self.annotators) - len(people)), self.labels_order)

    # -- agreement ---------------------------------------------------------------------
    def gold_labels(self, column: str) -> list[Any]:
        """The values of an input column, as gold labels (empty cells are missing)."""
        if column not in self.items.columns or column == "item_id":
            raise ConfigError(f"gold column {column!r} is not an input column",
                              fix=f"use one of {', '.join(map(str, self.items.columns[1:]))}")
        return [None if v is None or v == "" or (isinstance(v, float) and np.isnan(v)) else str(v).strip()
                for v in self.items[column].tolist()]

    def agreement(self, gold: str | None = None, *, level: str = "nominal", bootstrap: int = 1000,
                  seed: int = 0) -> dict[str, Any]:
        """Agreement between annotators, within each annotator, and against a gold column.

        Each annotator is represented by its own label per item (argmax of its soft label).
        Returns Krippendorff's alpha, Fleiss' kappa, percent agreement, pairwise Cohen's
        kappa, self-consistency over samples, and with ``gold`` (an input column) accuracy,
        macro-F1, UAR, Cohen's kappa and calibration (ECE, Brier, reliability) of every
        annotator and of the consensus; ``ci`` holds seeded percentile-bootstrap intervals
        over items (``bootstrap`` rounds; 0 for none). Formulas: docs/agreement.md.
        """
        from llm_annotator.analysis.agreement import (
            agreement_table,
            annotator_labels,
            bootstrap_intervals,
            self_consistency,
        )
        from llm_annotator.analysis.calibration import calibration

        order = self.items["item_id"].tolist()
        table = annotator_labels(self.votes, self.task.labels, order, annotators=self.annotators)
        gold_values = self.gold_labels(gold) if gold is not None else None
        out = agreement_table(table, self.task.labels, gold=gold_values, level=level)
        out["self_consistency"] = self_consistency(self.votes, self.task.labels)
        if gold_values is not None:
            per = self.soft_labels(by_annotator=True)
            out["calibration"] = {}
            for name in self.annotators:
                mine = per[per.index.get_level_values("annotator") == name].droplevel("annotator")
                probs = mine[self.labels_order].reindex(order).to_numpy(dtype=float)
                out["calibration"][name] = calibration(probs, gold_values, self.labels_order)
            # the consensus of the other annotators: the gold column never votes on itself
            others = self.without([gold]) if gold in self.annotators else self
            consensus = others.labels()
            out["vs_gold"]["consensus"] = vs_gold_table(gold_values, consensus["label"].tolist(), self.labels_order)
            out["calibration"]["consensus"] = calibration(
                consensus[[f"p_{x}" for x in self.labels_order]].to_numpy(dtype=float), gold_values, self.labels_order)
        if bootstrap:
            out["ci"] = bootstrap_intervals(table, self.task.labels, gold_values, rounds=bootstrap, seed=seed,
                                            measure=level)
        return out

    def with_columns(self, columns: Sequence[str]) -> AnnotationResult:
        """This result plus input columns imported as annotators (e.g. human labels)."""
        import pandas as pd

        from llm_annotator.outputs.columns import column_votes

        rows = self.items.to_dict(orient="records")
        extra = []
        for column in columns:
            if column not in self.items.columns:
                raise ConfigError(f"column {column!r} is not an input column of this run",
                                  fix=f"use one of {', '.join(map(str, self.items.columns[1:]))}")
            extra += column_votes(rows, self.items["item_id"].tolist(), column, self.task)
        from llm_annotator.core.votes import votes_frame

        added = votes_frame(extra)
        if "output" in self.votes.columns:  # one output's votes: the columns' votes as that output's
            added = output_frame(added, self.task.primary.name, self.task.primary.name)
        votes = pd.concat([self.votes, added], ignore_index=True)
        return self.derive(votes, [*self.annotators, *columns])

    def models_only(self) -> AnnotationResult:
        """This result without its reviewers (``human:`` annotators): what the models said."""
        return self.without([a for a in self.annotators if is_human(a)])

    def without(self, annotators: Sequence[str]) -> AnnotationResult:
        """This result with the votes of ``annotators`` left out."""
        drop = set(annotators)
        votes = self.votes[~self.votes["annotator"].isin(drop)].reset_index(drop=True)
        return self.derive(votes, [a for a in self.annotators if a not in drop])

    def derive(self, votes: Any, annotators: Sequence[str], items: Any = None, *,
               task: Task | None = None) -> AnnotationResult:
        """A result of the same task (or one output's) and run with other votes, annotators or input columns."""
        out = AnnotationResult(votes, self.task if task is None else task, self.items if items is None else items,
                               samples=self.samples, annotators=annotators, manifest=self.manifest)
        out.run_dir = self.run_dir
        return out

    def dawid_skene(self, *, per_sample: bool = False, n_iter: int = 100, tol: float = 1e-5) -> Any:
        """Fit Dawid-Skene over the valid votes (each model an annotator; or each sample)."""
        from llm_annotator.analysis.dawid_skene import dawid_skene

        valid = self.votes[self.votes["label"].notna()]
        workers = valid["annotator"].astype(str)
        if per_sample:
            workers = workers + "#" + valid["sample_index"].astype(str)
        return dawid_skene(valid["item_id"].tolist(), workers.tolist(), valid["label"].tolist(),
                           self.labels_order, n_iter=n_iter, tol=tol, item_order=self.items["item_id"].tolist())

    # -- exports -----------------------------------------------------------------------
    def to_frame(self, method: str = "mean") -> Any:
        """One row per item: input columns, per-label probabilities, label, confidence,
        counts; then for a task of several outputs each other output's labels table
        (:meth:`output`) as its column group, ``<output>_<column>`` (a multi-label output's
        consensus is always the mean)."""
        groups = {spec.name: self.output(spec.name).labels(*(() if spec.kind == "multi_label" else (method,)))
                  for spec in self.task.output_specs[1:]}
        return item_table(self.items, self.labels(method), self.labels_order, groups)

    def to_jsonl(self, path: str | Path, method: str = "mean", *, frame: Any = None) -> Path:
        """``labels.jsonl``; ``frame``: a :meth:`to_frame` already made (not computed again)."""
        rows = self.to_frame(method) if frame is None else frame
        write_atomic(Path(path), lambda out: write_jsonl_rows(rows, out))
        return Path(path)

    def to_csv(self, path: str | Path, method: str = "mean", *, frame: Any = None) -> Path:
        """``labels.csv`` (the soft-label lists left out: the ``p_`` columns hold them);
        ``frame``: a :meth:`to_frame` already made (not computed again)."""
        rows = self.to_frame(method) if frame is None else frame
        drop = soft_label_columns(self.task)
        write_atomic(Path(path), lambda out: write_csv_rows(rows, out, header=True, drop=drop))
        return Path(path)

    def explanations(self) -> Any:
        """One row per vote with an explanation: ``item_id``, ``annotator``,
        ``sample_index``, then each explanation field of the task, and ``reasoning`` (the
        provider's reasoning content) when a vote has it. Explanations are never labels."""
        votes = self.votes
        if "explanation" not in votes:
            votes = votes.assign(explanation=None)
        cells = votes["explanation"].tolist()
        fields = explanation_fields(self.task, {k for c in cells if isinstance(c, dict) for k in c})
        records = votes[[*EXPLANATION_KEYS, "explanation"]].to_dict(orient="records")
        return explanation_table(explanation_rows(records, fields), fields)

    def tally(self, annotators: Sequence[str]) -> dict[str, Any]:
        """What ``run.json``'s counts take from the votes: votes, valid (per annotator and per
        output), errors by kind, cost."""
        from llm_annotator.core.votes import error_counts

        votes = self.votes
        valid_by = votes.groupby("annotator", sort=False)["label"].count()
        return {"votes": len(votes), "valid": int(votes["label"].notna().sum()),
                "valid_by_annotator": {name: int(valid_by.get(name, 0)) for name in annotators},
                "errors": error_counts(votes["error"]), "cost_usd": float(votes["cost_usd"].sum()),
                "by_output": self.output_counts()}

    def write_run_files(self, run_dir: str | Path) -> None:
        """A run directory's ``labels.csv`` and ``labels.jsonl`` (the labels computed once for
        both) and, for a task with explanations or votes that carry them, ``explanations.csv``."""
        from llm_annotator.store.rundir import EXPLANATIONS

        run = Path(run_dir)
        frame = self.to_frame()
        self.to_csv(run / "labels.csv", frame=frame)
        self.to_jsonl(run / "labels.jsonl", frame=frame)
        if self.task.explanations or ("explanation" in self.votes and self.votes["explanation"].notna().any()):
            self.to_explanations_csv(run / EXPLANATIONS)

    def to_explanations_csv(self, path: str | Path, *, table: Any = None) -> Path:
        """``explanations.csv`` (:meth:`explanations`; ``table``: one already made), cells
        as ``labels.csv`` writes them: text never starts a spreadsheet formula."""
        rows = self.explanations() if table is None else table
        write_atomic(Path(path), lambda out: write_csv_rows(rows, out, header=True, drop=()))
        return Path(path)

    def to_parquet(self, path: str | Path, method: str = "mean") -> Path:
        frame = self.to_frame(method)
        tmp = Path(str(path) + ".tmp")
        try:
            frame.to_parquet(tmp, index=False)
            tmp.replace(path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise RunDirError(f"cannot write {path}: {exc.strerror}", fix="choose a writable path") from None
        return Path(path)

    def to_hf_dataset(self, method: str = "mean") -> Any:
        """A ``datasets.Dataset`` (soft labels as a list column in the task's label order)."""
        try:
            from datasets import Dataset
        except ImportError:
            raise ConfigError("to_hf_dataset needs the datasets package",
                              fix="pip install 'llm-annotator-kit[hf]'") from None

        return Dataset.from_pandas(self.to_frame(method), preserve_index=False)

    # -- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, run_dir: str | Path) -> AnnotationResult:
        """Read a finished run directory (``votes.jsonl``, ``labels.jsonl``, ``run.json``)."""
        import pandas as pd

        run = Path(run_dir)
        try:
            manifest = json.loads((run / "run.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise RunDirError(f"{run}: no readable run.json ({exc})",
                              fix="point to a directory written by 'llm-annotator annotate --out'") from None
        task = Task.model_validate(manifest["task"])
        human = read_human_votes(run)
        columns = list(manifest["data"]["columns"])
        written = output_names(columns, task.labels, group_columns(task))  # input column -> name in labels.jsonl
        named = {c: n for c, n in zip(columns, items_frame([], [], columns).columns[1:], strict=True)}
        try:
            with (run / "labels.jsonl").open(encoding="utf-8") as handle:
                records = [json.loads(line) for line in handle if line.strip()]
        except FileNotFoundError:
            raise RunDirError(f"{run}: no labels.jsonl: the run has not ended (or is running now)",
                              fix="wait for 'annotate' to finish, or run the same job again to end it") from None
        items = pd.DataFrame({"item_id": [str(r["item_id"]) for r in records],
                              **{named[c]: [r.get(written[c]) for r in records] for c in columns}})
        known = set(items["item_id"])
        human = [v for v in human if v.item_id in known]  # reviews of items a new job left out
        if any(v.label is not None and v.label not in task.labels for v in human):  # a new job's label set
            from llm_annotator.outputs.columns import label_votes

            vote = label_votes(task)
            human = [vote(v.item_id, v.annotator, v.raw or v.label, v.model)
                     if v.label is not None and v.label not in task.labels else v for v in human]
        votes = votes_frame([*read_votes(run / "votes.jsonl"), *human])
        reviewers = sorted({v.annotator for v in human})
        loaded = cls(votes, task, items, samples=manifest["parameters"]["samples"],
                     annotators=[*(m["name"] for m in manifest["models"]), *reviewers], manifest=manifest)
        loaded.run_dir = run
        return loaded


__all__ = ["LABEL_COLUMNS", "AnnotationResult", "item_table", "items_frame", "json_cell", "label_table", "output_names",
           "safe_cell", "text_cell", "write_csv_rows", "write_jsonl_rows"]
