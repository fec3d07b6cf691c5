"""One self-contained HTML report of a run: summary, distributions, agreement, calibration.

Plots are drawn with matplotlib (headless Agg backend) and embedded as PNG data URIs, so
the file opens in a browser with no network. matplotlib comes with the ``report`` extra;
without it the report has every table and says how to get the plots.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from llm_annotator.core.errors import ConfigError
from llm_annotator.core.votes import error_counts
from llm_annotator.store.reviews import is_human

NO_PLOTS = "The plots need matplotlib: pip install 'llm-annotator-kit[report]'"


def _figure_uri(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _pyplot() -> Any:
    """matplotlib's pyplot on the headless backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _table(header: list[str], rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _distribution_plot(plt: Any, result: Any, gold: list[Any] | None) -> str:
    labels = result.labels_order
    series = {}
    valid = result.votes[result.votes["label"].notna()]
    for name in result.annotators:
        counts = valid[valid["annotator"] == name]["label"].value_counts()
        series[name] = [counts.get(label, 0) / max(1, counts.sum()) for label in labels]
    if gold is not None:
        present = [g for g in gold if g is not None]
        series["gold"] = [present.count(label) / max(1, len(present)) for label in labels]
    fig, ax = plt.subplots(figsize=(max(6, len(labels) * 1.1), 3.6))
    width = 0.8 / len(series)
    for n, (name, values) in enumerate(series.items()):
        ax.bar(np.arange(len(labels)) + n * width, values, width, label=name)
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=30, ha="right")
    ax.set_ylabel("share of valid labels")
    ax.legend(fontsize=8)
    ax.set_title("Label distribution per annotator")
    return _figure_uri(fig)


def _confusion_plot(plt: Any, name: str, figures: dict[str, Any]) -> str:
    m = np.array(figures["confusion"], dtype=float)
    classes = figures["classes"]
    rows = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    for (i, j), count in np.ndenumerate(m):
        ax.text(j, i, int(count), ha="center", va="center", fontsize=7,
                color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xlabel(name)
    ax.set_ylabel("gold")
    ax.set_title(f"{name} vs gold (rows normalised)", fontsize=9)
    return _figure_uri(fig)


def _kappa_plot(plt: Any, figures: dict[str, Any]) -> str:
    names = figures["annotators"]
    matrix = np.array([[figures["pairwise_cohen_kappa"][a][b] for b in names] for a in names], dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2.5, 1.0 * len(names) + 1.8))
    ax.imshow(matrix, cmap="RdYlGn", vmin=-1, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, "–" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=8)
    ax.set_title("Pairwise Cohen's kappa", fontsize=9)
    return _figure_uri(fig)


def _calibration_plot(plt: Any, figures: dict[str, Any]) -> str:
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    for name, cal in figures["calibration"].items():
        points = cal["reliability"]
        if points:
            ax.plot([p["confidence"] for p in points], [p["accuracy"] for p in points], marker="o",
                    label=f"{name} (ECE {cal['ece']:.3f})")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("Reliability against gold", fontsize=9)
    return _figure_uri(fig)


def _coverage_plot(plt: Any, curve: list[dict[str, float]]) -> str:
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    ax.plot([p["coverage"] for p in curve], [p["accuracy"] for p in curve], marker=".")
    ax.set_xlabel("coverage (most confident share kept)")
    ax.set_ylabel("accuracy of kept labels")
    ax.set_ylim(0, 1)
    ax.set_title("Accuracy against coverage (consensus)", fontsize=9)
    return _figure_uri(fig)


def _shares_plot(plt: Any, shares: list[dict[str, Any]]) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 0.55 * len(shares) + 1.4))
    for k, row in enumerate(shares):
        for offset, key, colour in ((-0.15, "human_only", "tab:grey"), (0.15, "ppi_power", "tab:blue")):
            figure = row[key]
            ax.plot([figure["low"], figure["high"]], [k + offset] * 2, color=colour, linewidth=3,
                    label=("people only" if key == "human_only" else "PPI++") if k == 0 else None)
            ax.plot(figure["estimate"], k + offset, "o", color=colour, markersize=4)
        ax.plot(row["llm_share"], k, "x", color="tab:red", label="models only" if k == 0 else None)
    ax.set_yticks(range(len(shares)), [row["label"] for row in shares], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("share of the corpus")
    ax.legend(fontsize=7)
    ax.set_title(f"Label shares, {shares[0]['level']:.0%} intervals", fontsize=9)
    return _figure_uri(fig)


def _interval(figure: dict[str, Any]) -> str:
    return f"{figure['estimate']:.3f} [{figure['low']:.3f}, {figure['high']:.3f}]"


def trust_sections(result: Any, figures: dict[str, Any], image: Any) -> list[str]:
    """The report's part on human labels: agreement, calibration, corpus estimates, panel, next items."""
    seen = figures["reviewed"]
    design = {"random": "drawn at random", "interval": "drawn at random, weighted towards uncertain items",
              "random + chosen stratum": "drawn at random, beside items chosen by confidence or disagreement",
              "interval + chosen stratum": "drawn at random, beside items chosen by confidence or disagreement",
              "chosen": "chosen, not drawn at random", "column": "a gold column, taken as a random sample"}
    out = ["<h2>Trust from human labels</h2>",
           f"<p>{seen['n']} items labelled by {html.escape(seen['source'])}; "
           f"{html.escape(design.get(seen['design'], seen['design']))}; {seen['n_for_corpus']} stand for the "
           f"corpus in calibration and corpus estimates.</p>"]
    if seen["n_for_corpus"] == 0:
        out.append('<p class="note">No reviewed item was drawn at random, so calibration and corpus estimates '
                   "would be biased and are left out. Export the next items with "
                   "<code>llm-annotator review RUN --strategy random</code>.</p>")
    rows = [[n, v["n"], v["accuracy"], v["macro_f1"], v["uar"], v["cohen_kappa"]]
            for n, v in figures["agreement"]["vs_human"].items()]
    out += ["<h3>Agreement with people (reviewed items)</h3>",
            _table(["annotator", "n", "accuracy", "macro-F1", "UAR", "Cohen's kappa"], rows)]
    if figures.get("calibration"):
        rows = [[n, c["method"], c["n"], *((c["before"]["ece"], c["after"]["ece"], c["before"]["brier"],
                 c["after"]["brier"]) if "skipped" not in c else ("not fitted: " + c["skipped"], None, None, None))]
                for n, c in figures["calibration"].items()]
        out += ["<h3>Calibration fitted on the reviewed items (cross-fitted)</h3>",
                _table(["annotator", "method", "n", "ECE before", "ECE after", "Brier before", "Brier after"], rows),
                "<p>Each fold's items are scored by a calibration fitted on the other folds. labels.csv holds the "
                "calibrated consensus (cal_p_*, cal_label, cal_confidence).</p>"]
    if figures.get("shares"):
        rows = [[r["label"], r["llm_share"], _interval(r["human_only"]), _interval(r["ppi_power"]),
                 r["ppi_power"]["lambda"], _interval(r["ppi"])] for r in figures["shares"]]
        out += [f"<h3>Label shares of the corpus ({figures['shares'][0]['level']:.0%} intervals)</h3>",
                _table(["label", "models only", "people only", "PPI++ (models + people)", "λ", "PPI (λ = 1)"],
                       rows), image("label shares", _shares_plot, figures["shares"])]
    if figures.get("accuracy"):
        rows = [[n, _interval(a["human_only"]), _interval(a["ppi_power"])] for n, a in figures["accuracy"].items()]
        out += ["<h3>Accuracy over the corpus</h3>", _table(["annotator", "people only", "PPI++"], rows),
                "<p>An item without a valid label of the annotator counts as wrong here (above, in the agreement "
                "with people, it is left out).</p>"]
    if figures.get("panel"):
        panel = figures["panel"]
        rows = [[p["a"], p["b"], p["phi"], p["n"], p["both_wrong"]] for p in panel["pairs"]]
        out += ["<h3>Annotators that fail together</h3>",
                _table(["annotator", "annotator", "error correlation (phi)", "n", "both wrong"], rows),
                f"<p>{len(panel['annotators'])} annotators count as {_fmt(panel['effective_number'])} independent "
                f"ones (mean phi {_fmt(panel['mean_phi'])}; eigenvalue figure "
                f"{_fmt(panel['effective_number_eigen'])}).</p>"]
    if figures.get("distance"):
        d = figures["distance"]
        out += ["<h3>Distance to the people's label distribution</h3>",
                _table(["items", "Jensen-Shannon", "KL(people ‖ models)", "total variation"],
                       [[d["n"], d["jensen_shannon"], d["kl_human_llm"], d["total_variation"]]])]
    nxt = figures["next"]
    texts = result.items.set_index("item_id")
    rows = [[item, " | ".join(str(texts.loc[item].get(c, "")) for c in result.items.columns[1:3])[:160]]
            for item in nxt["items"]]
    out += [f"<h3>Next items to review (strategy {html.escape(nxt['strategy'])})</h3>",
            _table(["item", "input"], rows) if rows else f"<p>{html.escape(nxt.get('note', 'None.'))}</p>"]
    return out


def _label_sections(result: Any, gold: str | None, image: Any, consensus: Any) -> list[str]:
    """The part of a categorical or ordinal primary output: labels, agreement, gold, trust."""
    from llm_annotator.analysis.calibration import accuracy_coverage

    gold_values = result.gold_labels(gold) if gold else None
    figures = result.agreement(gold=gold, bootstrap=200)
    sections = ["<h2>Labels</h2>", image("label distribution", _distribution_plot, result, gold_values)]
    agree_rows = [["Krippendorff's alpha", figures["krippendorff_alpha"]], ["Fleiss' kappa", figures["fleiss_kappa"]],
                  ["percent agreement", figures["percent_agreement"]]]
    sections += ["<h2>Agreement between annotators</h2>", _table(["figure", "value"], agree_rows)]
    if len(figures["annotators"]) > 1:
        sections.append(image("agreement heatmap", _kappa_plot, figures))
    consistency = [[n, v["samples"], v["alpha"], v["mean_top_share"]] for n, v in figures["self_consistency"].items()]
    sections.append(_table(["annotator", "samples", "alpha over samples", "mean top share"], consistency))
    if gold_values is not None:
        rows = [[n, v["n"], v["accuracy"], v["macro_f1"], v["uar"], v["cohen_kappa"],
                 figures["calibration"].get(n, {}).get("ece"), figures["calibration"].get(n, {}).get("brier")]
                for n, v in figures["vs_gold"].items()]
        sections += [f"<h2>Against gold ({html.escape(gold or '')})</h2>",
                     _table(["annotator", "n", "accuracy", "macro-F1", "UAR", "Cohen's kappa", "ECE", "Brier"], rows)]
        sections += [image(f"confusion {n}", _confusion_plot, n, v) for n, v in figures["vs_gold"].items() if v["n"]]
        sections.append(image("calibration curve", _calibration_plot, figures))
        index = {label: k for k, label in enumerate(result.labels_order)}
        keep = [i for i, g in enumerate(gold_values) if g in index and isinstance(consensus["label"].iloc[i], str)]
        if keep:
            correct = np.array([consensus["label"].iloc[i] == gold_values[i] for i in keep])
            curve = accuracy_coverage(consensus["confidence"].to_numpy()[keep], correct)
            sections.append(image("accuracy coverage", _coverage_plot, curve))
    if result.votes["annotator"].map(is_human).any() or gold_values is not None:
        from llm_annotator.outputs.trust import NO_TRUST, trust, trust_available

        if trust_available():
            try:
                with_people = trust(result, None if result.votes["annotator"].map(is_human).any() else gold)
                sections += trust_sections(result, with_people, image)
            except ConfigError as exc:  # e.g. no reviewed label in the label set: the rest of the report stands
                sections += ["<h2>Trust from human labels</h2>",
                             f'<p class="note">{html.escape(exc.message)}: {html.escape(exc.fix or "")}</p>']
        else:
            sections.append(f'<p class="note">{html.escape(NO_TRUST)}.</p>')
    return sections


def _gold_columns(task: Any, gold: str | Mapping[str, str] | None) -> dict[str, str]:
    """Each output's gold column: a plain name is the primary output's."""
    if gold is None:
        return {}
    if isinstance(gold, str):
        return {task.primary.name: gold}
    for name in gold:
        task.output_spec(name)  # an unknown output is an error that lists the task's outputs
    return dict(gold)


def write_report(result: Any, path: str | Path, *, gold: str | Mapping[str, str] | None = None,
                 uncertain: int = 25) -> Path:
    """Write the HTML report of ``result`` to ``path``.

    ``gold`` names a reference column of the primary output, or maps outputs to their
    reference columns (``{"sentiment": "gold", "arousal": "gold_arousal"}``). A task with
    several outputs gets one section per output after the primary's
    (:mod:`llm_annotator.outputs.report_outputs`).
    """
    from llm_annotator.outputs.report_outputs import output_section, outputs_index
    from llm_annotator.store.files import write_atomic

    plt = _pyplot()

    def image(alt: str, draw: Any, *args: Any) -> str:
        return "" if plt is None else f'<img alt="{html.escape(alt)}" src="{draw(plt, *args)}">'

    m = result.manifest
    golds = _gold_columns(result.task, gold)
    primary = result.task.primary
    gold = golds.get(primary.name)
    structured = len(result.task.output_specs) > 1 or primary.kind not in ("categorical", "ordinal")
    voters = result.without([gold]) if gold and gold in result.annotators else result
    consensus = voters.labels()  # the gold column never votes on the consensus it is scored against
    counts = m.get("counts", {})
    summary = [
        ["task", m.get("task", {}).get("name", result.task.name)],
        ["template hash", result.task.template_hash],
        ["annotators", ", ".join(result.annotators)],
        ["items", len(result.items)], ["samples per annotator", result.samples],
        ["votes", len(result.votes)], ["valid votes", int(result.votes["label"].notna().sum())],
        ["tokens in / out", f"{m.get('tokens_in', 0)} / {m.get('tokens_out', 0)}"],
        ["cost (this run)", f"${m.get('cost_usd', 0.0):.4f}"], ["wall time", f"{m.get('wall_s', 0.0):.1f} s"],
        ["cache hits", counts.get("cache_hits", "–")], ["status", m.get("status", "–")],
    ]
    models = [[s.get("name"), s.get("model"), s.get("temperature"), s.get("max_tokens") or result.task.max_tokens]
              for s in m.get("models", [])]
    errors = sorted(error_counts(result.votes["error"]).items(), key=lambda kv: -kv[1])
    by_reason = [[kind, n] for kind, n in errors]
    sections = [
        f'<p class="note">{html.escape(NO_PLOTS)}.</p>' if plt is None else "",
        "<h2>Run</h2>", _table(["", ""], summary, "summary"),
        _table(["annotator", "model", "temperature", "max tokens"], models) if models else "",
        "<h3>Invalid answers and failed requests</h3>",
        _table(["reason", "votes"], by_reason) if by_reason else "<p>None: every vote is valid.</p>",
    ]
    if structured:
        sections.append(outputs_index(result.task))
    if primary.kind in ("categorical", "ordinal"):
        if structured:
            sections.append(f'<h2 id="output-{html.escape(primary.name)}">Output {html.escape(primary.name)} '
                            f"({primary.kind}, primary)</h2>")
        sections += _label_sections(result, gold, image, consensus)
    else:
        sections += output_section(result, primary.name, gold, image, primary=True)
    order = [c for c in ("confidence", "margin") if c in consensus]
    review = consensus.sort_values(order, na_position="first").head(uncertain)
    votes = result.votes.groupby("item_id")
    rows = []
    for _, row in review.iterrows():
        item_votes = votes.get_group(row["item_id"]) if row["item_id"] in votes.groups else None
        cast = "; ".join(f"{v.annotator}: {v.label if isinstance(v.label, str) else '(' + str(v.error) + ')'}"
                         for v in item_votes.itertuples()) if item_votes is not None else ""
        text = " | ".join(str(result.items.set_index("item_id").loc[row["item_id"]].get(c, ""))
                          for c in result.items.columns[1:4])
        rows.append([row["item_id"], text[:160], row["label"], row["confidence"], cast[:300]])
    title = f" ({html.escape(primary.name)})" if structured else ""
    sections += [f"<h2>Most uncertain items{title}</h2>",
                 _table(["item", "input", "consensus", "confidence", "votes"], rows, "uncertain")]
    for spec in result.task.output_specs[1:]:
        sections += output_section(result, spec.name, golds.get(spec.name), image)
    document = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>llm_annotator report: {html.escape(result.task.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }}
th {{ background: #f2f2f2; }} img {{ max-width: 100%; margin: 0.5em 0.5em 0.5em 0; }}
.note {{ background: #fff6d6; border: 1px solid #e0c86a; padding: 0.4em 0.8em; }}
</style></head>
<body>
<h1>Annotation report: {html.escape(result.task.name)}</h1>
<p>Generated {dt.datetime.now(dt.UTC).isoformat(timespec="seconds")} by llm_annotator. Figures: docs/agreement.md.</p>
{"".join(sections)}
<script>
window.addEventListener("load", function () {{
  var imgs = Array.from(document.images);
  document.body.dataset.images = imgs.length;
  document.body.dataset.rendered = imgs.filter(function (i) {{ return i.complete && i.naturalWidth > 0; }}).length;
}});
</script>
</body></html>
"""
    out = Path(path)
    write_atomic(out, document)
    return out


__all__ = ["write_report"]
