"""Trust from a few human labels: the run's model labels read against the items people labelled.

One function, :func:`trust`, joins what the analysis layer computes from a run whose
reviewers' answers were imported (``review --import``), or from a gold column:

* agreement of every model and of their consensus with the reviewed labels;
* calibration of soft labels fitted on the reviewed items, its gain cross-fitted;
* the corpus's label shares and each model's accuracy, by prediction-powered inference
  beside the human labels alone;
* how far the models' errors go together (an effective number of annotators), and the
  distance to the human label distribution where several people labelled an item;
* the items people should check next.

**Which reviewed items may stand for the corpus.** Corpus estimates and a calibration
fitted for every item need reviewed items drawn at random: by ``review --strategy
random`` (a simple random sample) or ``interval`` (at random with known, unequal
probabilities, which the estimates weight by). Items chosen by lowest confidence or by
disagreement are not such a sample: they count for agreement, never for corpus
estimates or calibration, and the figures say so. A gold column (``gold=``) is taken as
a random sample of the items that have a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from llm_annotator.core.errors import ConfigError

#: Strategies whose items are drawn at random with known inclusion probabilities.
RANDOM_DESIGNS = ("random", "interval")
#: The smallest number of random-design reviewed items a calibration is fitted on.
MIN_CALIBRATION = 20


@dataclass(frozen=True)
class Reviewed:
    """The human labels of a run, aligned with its items."""

    gold: list[str | None]          # per item: the reviewers' label (majority), None where none
    source: str                     # what the labels are: the reviewers, or a gold column
    design: str                     # "random", "interval", "chosen" or "column"
    usable: np.ndarray              # per item: a label that may stand for the corpus
    inclusion: np.ndarray | None    # per item: inclusion probability (None: a simple random sample)
    distributions: np.ndarray       # items x labels: share of reviewers per label (NaN under 2 reviewers)

    @property
    def n(self) -> int:
        return sum(g is not None for g in self.gold)


def reviewed(result: Any, gold: str | None = None) -> Reviewed:
    """The reviewed labels of ``result``: from a gold column, else from its ``human:`` votes
    (the label most reviewers gave an item; a tie goes to the label listed first)."""
    from llm_annotator.store.reviews import is_human, read_rounds

    one_label_per_item(result, "trust")
    labels = result.labels_order
    n_items = len(result.items)
    if gold is not None:  # read as reviewers' answers are: "Positive" is positive, "mixed" no label
        from llm_annotator.outputs.columns import label_votes

        vote = label_votes(result.task)
        values = [None if g is None else vote("", "", g, "").label for g in result.gold_labels(gold)]
        usable = np.array([v is not None for v in values])
        return Reviewed(values, f"column {gold}", "column", usable, None, np.full((n_items, len(labels)), np.nan))
    votes = result.votes[result.votes["annotator"].map(is_human) & result.votes["label"].notna()]
    index = {item: i for i, item in enumerate(result.items["item_id"])}
    counts = np.zeros((n_items, len(labels)))
    column = {label: k for k, label in enumerate(labels)}
    for item, label in zip(votes["item_id"], votes["label"], strict=True):
        counts[index[item], column[label]] += 1
    total = counts.sum(axis=1)
    values = [labels[int(np.argmax(row))] if row.sum() else None for row in counts]
    with np.errstate(invalid="ignore", divide="ignore"):
        distributions = np.where((total >= 2)[:, None], counts / total[:, None], np.nan)
    reviewers = sorted(set(votes["annotator"]))
    source = f"reviewers {', '.join(reviewers)}" if reviewers else "no reviewer"
    # The design, by the round that chose each reviewed item (the first, with files of older
    # versions). Answered items of chosen rounds are a stratum taken whole (inclusion 1);
    # items of random rounds stand for the rest with the probability their round gave them.
    # A round drawn from another corpus (a new job with more items) stands for nothing.
    drawn: dict[str, tuple[str, float | None]] = {}
    for record in read_rounds(result.run_dir) if result.run_dir is not None else []:
        same_corpus = record.get("n_items", n_items) == n_items
        for item, probability in record["items"].items():
            strategy = record.get("strategy", "chosen")
            drawn.setdefault(item, (strategy if same_corpus else "chosen", probability))
    pi = np.ones(n_items)
    random_items = np.zeros(n_items, dtype=bool)
    chosen_items = np.zeros(n_items, dtype=bool)
    for item, i in index.items():
        if values[i] is None:
            continue
        strategy, probability = drawn.get(item, ("outside", None))
        if strategy in RANDOM_DESIGNS and probability:
            random_items[i], pi[i] = True, float(probability)
        elif strategy in ("confidence", "disagreement"):
            chosen_items[i] = True
    if not random_items.any():  # no random sample: nothing stands for the corpus
        return Reviewed(values, source, "chosen", np.zeros(n_items, dtype=bool), None, distributions)
    usable = random_items | chosen_items
    strata = chosen_items.any() or len({pi[i] for i in np.flatnonzero(random_items)}) > 1
    design = "interval" if any(drawn.get(item, ("",))[0] == "interval" for item in index) else "random"
    if chosen_items.any():
        design = f"{design} + chosen stratum"
    return Reviewed(values, source, design, usable, pi if strata else None, distributions)


def one_label_per_item(result: Any, what: str) -> None:
    """Reviews and trust figures hold one label per item against the consensus: refuse a
    task whose primary output is a set of labels."""
    primary = result.task.primary
    if primary.kind == "multi_label":
        raise ConfigError(f"{what} works on one label per item, and the primary output {primary.name!r} of task "
                          f"{result.task.name!r} is multi-label",
                          fix="measure a multi-label output against a gold column: llm-annotator agree RUN --gold "
                              f"{primary.name}=COLUMN")


def disagreement(result: Any) -> np.ndarray:
    """Per item, 1 − the share of the most given label among the models' valid votes
    (0 when they all agree or no vote is valid)."""
    votes = result.votes[result.votes["label"].notna()]
    counts = votes.groupby(["item_id", "label"]).size().unstack(fill_value=0)
    share = counts.max(axis=1) / counts.sum(axis=1)
    return (1.0 - share).reindex(result.items["item_id"]).fillna(0.0).to_numpy(dtype=float)


NO_TRUST = "The trust figures need ppi-python, scikit-learn and scipy: pip install 'llm-annotator-kit[trust]'"


def trust_available() -> bool:
    """Whether the ``trust`` extra's packages are installed."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("ppi_py", "sklearn", "scipy"))


def trust(result: Any, gold: str | None = None, *, level: float = 0.9, method: str = "temperature",
          strategy: str = "random", next_items: int = 10, seed: int = 0) -> dict[str, Any]:
    """Every trust figure of a run (see the module docstring); ``gold`` an input column to
    use instead of the reviewers' labels. Raises ConfigError when nothing was reviewed."""
    from llm_annotator.analysis.agreement import annotator_labels
    from llm_annotator.analysis.estimates import accuracy, label_shares
    from llm_annotator.analysis.panel import distribution_distance, error_correlation
    from llm_annotator.analysis.recalibrate import cross_fitted, fit_calibrator
    from llm_annotator.store.reviews import is_human

    if not trust_available():
        raise ConfigError("the trust figures need the trust extra", fix="pip install 'llm-annotator-kit[trust]'")
    people = reviewed(result, gold)
    if people.n == 0:
        if gold is not None and any(g is not None for g in result.gold_labels(gold)):
            raise ConfigError(f"gold column {gold!r} holds no label of the task "
                              f"(e.g. {next(g for g in result.gold_labels(gold) if g is not None)!r})",
                              fix=f"name a column whose values are among {', '.join(result.labels_order)}")
        answers = result.votes[result.votes["annotator"].map(is_human)]
        if gold is None and len(answers):
            raise ConfigError(f"the reviewers' {len(answers)} answers are all outside the label set "
                              f"(e.g. {answers['raw'].iloc[0]!r})",
                              fix=f"answer with one of {', '.join(result.labels_order)}, then import again")
        raise ConfigError("no item of this run has a human label",
                          fix="export items with 'llm-annotator review RUN', then import the reviewers' answers "
                              "with 'llm-annotator review RUN --import FILE' (or name a gold column)")
    models = result.models_only()
    if gold is not None and gold in models.annotators:
        models = models.without([gold])
    labels = result.labels_order
    order = result.items["item_id"].tolist()
    consensus = models.labels()
    probs = consensus[[f"p_{x}" for x in labels]].to_numpy(dtype=float)
    per = models.soft_labels(by_annotator=True)
    soft = {name: per[per.index.get_level_values("annotator") == name].droplevel("annotator")[labels]
            .reindex(order).to_numpy(dtype=float) for name in models.annotators}
    soft["consensus"] = probs
    out: dict[str, Any] = {"reviewed": {"n": people.n, "source": people.source, "design": people.design,
                                        "n_for_corpus": int(people.usable.sum()), "level": level}}
    # agreement with people on every reviewed item
    column = "reviewed label"
    with_gold = models.derive(models.votes, models.annotators, models.items.assign(**{column: people.gold}))
    figures = with_gold.agreement(gold=column, bootstrap=200, seed=seed)
    out["agreement"] = {"vs_human": figures["vs_gold"], "ci": figures.get("ci", {})}
    # calibration and corpus figures: random-design items only
    usable = people.usable
    design_gold = [g if u else None for g, u in zip(people.gold, usable, strict=True)]
    weights = None if people.inclusion is None else 1.0 / people.inclusion[usable]
    out["calibration"] = {}
    if usable.sum() >= MIN_CALIBRATION:
        kept = [g for g, u in zip(people.gold, usable, strict=True) if u]
        for name, p in soft.items():  # a model with too few soft labels on these items is skipped, saying why
            try:
                out["calibration"][name] = cross_fitted(p[usable], kept, labels, method=method, seed=seed,
                                                        weights=weights)
            except ConfigError as exc:
                out["calibration"][name] = {"method": method, "n": int((~np.isnan(p[usable]).any(axis=1)).sum()),
                                            "skipped": exc.message}
        try:
            calibrator = fit_calibrator(probs[usable], kept, labels, method=method, weights=weights)
            out["calibrated"] = calibrator.apply(probs)
            out["calibrator"] = calibrator
        except ConfigError:
            pass
    inclusion = None if people.inclusion is None else people.inclusion.tolist()
    if usable.any():
        out["shares"] = label_shares(probs, design_gold, labels, level=level, inclusion=inclusion)
        out["accuracy"] = {}
        table = annotator_labels(models.votes, labels, order, annotators=models.annotators)
        for name in [*models.annotators, "consensus"]:
            mine = consensus["label"].tolist() if name == "consensus" else table[name].tolist()
            hit = [None if g is None else float(m == g) for m, g in zip(mine, design_gold, strict=True)]
            column_of = {label: k for k, label in enumerate(labels)}
            predicted = np.array([probs[i, column_of[m]] if isinstance(m, str) and m in column_of
                                  and not np.isnan(probs[i]).any() else 0.0 for i, m in enumerate(mine)])
            out["accuracy"][name] = accuracy(hit, predicted, level=level, inclusion=inclusion)
        if len(models.annotators) > 1:
            out["panel"] = error_correlation(table, people.gold, labels=labels)
    several = ~np.isnan(people.distributions).any(axis=1)
    if several.any():
        out["distance"] = distribution_distance(probs[several], people.distributions[several])
    try:  # what 'review RUN -n N --strategy S' would choose now
        from llm_annotator.outputs.review import next_items as choose_next

        chosen = choose_next(result, next_items, strategy=strategy)
        out["next"] = {"strategy": strategy, "items": [order[i] for i in chosen.indices]}
    except ConfigError as exc:
        out["next"] = {"strategy": strategy, "items": [], "note": exc.message}
    return out


def format_trust(figures: dict[str, Any]) -> str:
    """The trust figures as text for the terminal."""
    seen = figures["reviewed"]
    lines = [f"reviewed: {seen['n']} items ({seen['source']}; design {seen['design']}; "
             f"{seen['n_for_corpus']} stand for the corpus)"]
    if seen["n_for_corpus"] == 0:
        lines.append("  no reviewed item was drawn at random: calibration and corpus estimates are left out "
                     "(review --strategy random)")
    lines.append("agreement with people:")
    for name, v in figures["agreement"]["vs_human"].items():
        lines.append(f"  {name:<24} n={v['n']:<5} accuracy {v['accuracy']:.3f}  macro-F1 {v['macro_f1']:.3f}")
    if figures.get("calibration"):
        lines.append("calibration, cross-fitted (ECE before -> after, Brier before -> after):")
        for name, c in figures["calibration"].items():
            if "skipped" in c:
                lines.append(f"  {name:<24} not fitted: {c['skipped']}")
                continue
            lines.append(f"  {name:<24} {c['before']['ece']:.3f} -> {c['after']['ece']:.3f}   "
                         f"{c['before']['brier']:.3f} -> {c['after']['brier']:.3f}  ({c['method']}, n={c['n']})")

    def interval(f: dict[str, Any]) -> str:
        return f"{f['estimate']:.3f} [{f['low']:.3f}, {f['high']:.3f}]"

    if figures.get("shares"):
        level = figures["shares"][0]["level"]
        lines.append(f"label shares of the corpus ({level:.0%} intervals): models only | people only | PPI++")
        for row in figures["shares"]:
            lines.append(f"  {row['label']:<16} {row['llm_share']:.3f} | {interval(row['human_only'])} | "
                         f"{interval(row['ppi_power'])}")
        lines.append("accuracy over the corpus (an item without a valid label counts as wrong): people only | PPI++")
        for name, a in figures["accuracy"].items():
            lines.append(f"  {name:<24} {interval(a['human_only'])} | {interval(a['ppi_power'])}")
    if figures.get("panel"):
        panel = figures["panel"]
        if panel["mean_phi"] == panel["mean_phi"]:
            lines.append(f"error correlation: mean phi {panel['mean_phi']:.3f}; {len(panel['annotators'])} "
                         f"annotators count as {panel['effective_number']:.2f} independent ones")
        else:
            lines.append("error correlation: undefined (on the reviewed items a model was never wrong, or always)")
    if figures.get("distance"):
        d = figures["distance"]
        lines.append(f"distance to the people's distribution ({d['n']} items): Jensen-Shannon "
                     f"{d['jensen_shannon']:.3f}, total variation {d['total_variation']:.3f}")
    nxt = figures["next"]
    lines.append(f"next items to review ({nxt['strategy']}): "
                 + (", ".join(map(str, nxt["items"])) or nxt.get("note", "none")))
    return "\n".join(lines)


def trust_json(figures: dict[str, Any]) -> str:
    """The trust figures as JSON text (the calibrated soft labels and the fitted map left out)."""
    from llm_annotator.analysis.agreement import to_json

    return to_json({k: v for k, v in figures.items() if k not in ("calibrated", "calibrator")})


def write_labels(run_dir: Any, *, method: str = "temperature") -> dict[str, Any]:
    """Rewrite a run's ``labels.csv`` and ``labels.jsonl`` with what people said: the
    models' consensus as before, ``review_label`` (the reviewers' label), and — with at
    least :data:`MIN_CALIBRATION` reviewed items that stand for the corpus, and only when
    the calibration lowers the cross-fitted Brier score on them — the consensus
    calibrated on them (``cal_p_<label>``, ``cal_label``, ``cal_confidence``).
    Returns ``{"reviewed": n, "calibrated_on": n or 0, "method": ..., "not_calibrated": why or ""}``;
    a calibration that cannot be fitted leaves the calibrated columns out, never the file."""
    from pathlib import Path

    from llm_annotator.analysis.aggregate import argmax_labels
    from llm_annotator.outputs.result import AnnotationResult

    result = AnnotationResult.load(run_dir)
    people = reviewed(result)
    models = result.models_only()
    frame = models.to_frame()
    labels = result.labels_order
    frame["review_label"] = people.gold
    probs = frame[[f"p_{x}" for x in labels]].to_numpy(dtype=float)
    fitted = people.usable & ~np.isnan(probs).any(axis=1)  # items with a soft label to calibrate
    calibrated_on, reason = int(fitted.sum()), ""
    if calibrated_on < MIN_CALIBRATION:
        reason = (f"{calibrated_on} reviewed items drawn at random have a soft label; calibration needs "
                  f"{MIN_CALIBRATION} (review --strategy random, then import the answers)")
    elif not trust_available():
        reason = NO_TRUST
    else:
        from llm_annotator.analysis.recalibrate import cross_fitted, fit_calibrator

        kept = [g for g, u in zip(people.gold, fitted, strict=True) if u]
        weights = None if people.inclusion is None else 1.0 / people.inclusion[fitted]
        try:  # written only where it helps on held-out items: a calibration can make labels worse
            gain = cross_fitted(probs[fitted], kept, labels, method=method, weights=weights)
            if not gain["after"]["brier"] < gain["before"]["brier"]:
                raise ConfigError(f"{method} calibration would not help: cross-fitted Brier "
                                  f"{gain['before']['brier']:.3f} -> {gain['after']['brier']:.3f}")
            calibrated = fit_calibrator(probs[fitted], kept, labels, method=method, weights=weights).apply(probs)
        except ConfigError as exc:
            reason = exc.message
        else:
            for k, label in enumerate(labels):
                frame[f"cal_p_{label}"] = calibrated[:, k]
            frame["cal_label"] = argmax_labels(calibrated, labels)
            frame["cal_confidence"] = calibrated.max(axis=1)
    if reason:
        calibrated_on = 0
    run = Path(run_dir)
    result.to_csv(run / "labels.csv", frame=frame)
    result.to_jsonl(run / "labels.jsonl", frame=frame)
    return {"reviewed": people.n, "calibrated_on": calibrated_on, "method": method, "not_calibrated": reason}


__all__ = ["NO_TRUST", "RANDOM_DESIGNS", "Reviewed", "disagreement", "format_trust", "reviewed", "trust",
           "trust_available", "trust_json", "write_labels"]
