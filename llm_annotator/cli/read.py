"""The commands that read a run: ``agree``, ``report``, ``review``, ``trust``, ``merge``,
``cache``, ``templates``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from llm_annotator.core.errors import ConfigError


def cmd_agree(args: argparse.Namespace) -> int:
    from llm_annotator.analysis.agreement import format_report, to_json
    from llm_annotator.analysis.kinds import format_output_report
    from llm_annotator.outputs.result import AnnotationResult

    source = Path(args.source)
    labels = [x.strip() for x in args.labels.split(",")] if args.labels else None
    if not source.exists():
        raise ConfigError(f"{source} does not exist",
                          fix="name a run directory written by 'annotate', or a table (.csv, .jsonl, .parquet)")
    if source.is_dir():
        result = AnnotationResult.load(source)
        if args.columns:
            result = result.with_columns(args.columns)
        default_out = source / "agreement.json"
    else:
        from llm_annotator.outputs.columns import result_from_columns

        if not args.columns:
            raise ConfigError(f"{source} is a table: name the label columns to compare",
                              fix="add --columns COLUMN [COLUMN ...]")
        result = result_from_columns(source, args.columns, labels=labels, id_column=args.id_column)
        default_out = Path("agreement.json")
    names = result.output_names
    chosen = args.output or names
    for name in chosen:
        if name not in names:
            raise ConfigError(f"the run's task has no output {name!r}", fix=f"use one of {', '.join(names)}")
    golds = gold_columns(args.gold or [], names)
    for name in golds:
        if name not in chosen:
            raise ConfigError(f"--gold names a column for output {name!r}, which --output leaves out",
                              fix=f"add --output {name}, or leave that --gold out")
    figures: dict[str, dict[str, Any]] = {}
    for name in chosen:
        view = result if name == names[0] else result.output(name)
        options = {"level": args.level} if args.level else {}
        found = view.agreement(gold=golds.get(name), bootstrap=args.bootstrap, **options)
        if len(names) > 1:
            print(f"== output {name} ({result.task.output_spec(name).kind}) ==")
        print(format_report(found, gold=golds.get(name)) if "kind" not in found else format_output_report(found))
        figures[name] = found
    # one output: its figures as before; several: the first chosen one's, the others under "outputs"
    first, *rest = chosen
    document = dict(figures[first])
    if len(names) > 1:
        document["output"] = first
        document["outputs"] = {name: figures[name] for name in rest}
    out = Path(args.out) if args.out else default_out
    from llm_annotator.store.files import write_atomic

    write_atomic(out, to_json(document))
    print(f"wrote {out}")
    return 0


def gold_columns(given: list[str], outputs: list[str]) -> dict[str, str]:
    """``--gold COLUMN`` (the primary output's) or ``--gold OUTPUT=COLUMN``, repeatable."""
    golds: dict[str, str] = {}
    for text in given:
        name, _, column = text.rpartition("=") if "=" in text else (outputs[0], "", text)
        if name not in outputs:
            raise ConfigError(f"--gold {text}: the run's task has no output {name!r}",
                              fix=f"write --gold OUTPUT=COLUMN with OUTPUT one of {', '.join(outputs)}")
        if name in golds:
            raise ConfigError(f"--gold names two columns for output {name!r}", fix="give one gold column per output")
        golds[name] = column
    return golds


def cmd_report(args: argparse.Namespace) -> int:
    from llm_annotator.outputs.report import write_report
    from llm_annotator.outputs.result import AnnotationResult

    result = AnnotationResult.load(args.run)
    if args.columns:
        result = result.with_columns(args.columns)
    golds = gold_columns(args.gold or [], result.output_names)
    gold: str | dict[str, str] | None = golds or None
    if golds and list(golds) == result.output_names[:1]:
        gold = golds[result.output_names[0]]  # the first output's column alone: the report as it always was
    out = write_report(result, args.out or Path(args.run) / "report.html", gold=gold)
    print(f"wrote {out}")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from llm_annotator.outputs.result import AnnotationResult
    from llm_annotator.outputs.review import export_review

    if args.import_file:
        from llm_annotator.outputs.review import import_reviews

        counts = import_reviews(args.run, args.import_file, reviewer=args.reviewer, label_column=args.label_column)
        print(f"{args.import_file}: {counts['added']} answers added, {counts['updated']} changed, "
              f"{counts['unchanged']} already recorded ({', '.join(counts['reviewers']) or 'no reviewer'})")
        written = counts["labels"]
        print(f"labels.csv, labels.jsonl: review_label of {written['reviewed']} items" + (
            f"; consensus calibrated ({written['method']}) on {written['calibrated_on']} items drawn at random"
            if written["calibrated_on"] else f"; not calibrated: {written['not_calibrated']}"))
        if counts["invalid"]:
            print(f"{counts['invalid']} answers are not labels of the task: kept as invalid votes "
                  f"(out_of_label_set)", file=sys.stderr)
        return 0
    result = AnnotationResult.load(args.run)
    prefix = Path(args.out) if args.out else Path(args.run) / "review"
    paths = export_review(result, prefix, n=args.items, text_column=args.text_column, strategy=args.strategy,
                          seed=args.seed)
    from llm_annotator.outputs.review import STRATEGIES

    print(f"strategy {args.strategy}: {STRATEGIES[args.strategy]}")
    for path in paths:
        print(f"wrote {path}")
    return 0


def cmd_trust(args: argparse.Namespace) -> int:
    from llm_annotator.outputs.result import AnnotationResult
    from llm_annotator.outputs.trust import format_trust, trust, trust_json
    from llm_annotator.store.files import write_atomic

    figures = trust(AnnotationResult.load(args.run), args.gold, level=args.level, method=args.method,
                    strategy=args.strategy, next_items=args.next)
    print(format_trust(figures))
    out = Path(args.out) if args.out else Path(args.run) / "trust.json"
    write_atomic(out, trust_json(figures))
    print(f"wrote {out}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from llm_annotator.outputs.merge import merge_runs

    merged = merge_runs(args.runs, args.out)
    print(f"merged {len(args.runs)} runs: {len(merged.items)} items, {len(merged.votes)} votes into {args.out}")
    missing = merged.manifest.get("missing_shards") or []
    if missing:
        print(f"partial: shard(s) {', '.join(map(str, missing))} of this job are missing; merge them in too")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from llm_annotator.store.cache import AnswerCache

    cache = AnswerCache(args.cache_dir)
    try:
        if args.action == "stats":
            stats = cache.stats()
            print(f"{stats['entries']} answers, {stats['bytes'] / 1e6:.1f} MB in {stats['directory']}")
            if stats.get("damaged"):
                print(f"the cache is damaged ({stats['damaged']}): run 'llm-annotator cache clear "
                      f"--cache-dir {cache.directory}'", file=sys.stderr)
        else:
            damaged = cache.damaged
            removed = cache.clear()
            print(f"removed the damaged cache in {cache.directory}" if damaged
                  else f"removed {removed} answers from {cache.directory}")
    finally:
        cache.close()
    return 0


def cmd_templates(args: argparse.Namespace) -> int:
    from llm_annotator.core.task import builtin_dir, builtin_names, load_task

    if args.action == "list":
        for name in builtin_names():
            task = load_task(name, labels=["x"]) if name == "classification" else load_task(name)
            labels = "caller's labels" if name == "classification" else ", ".join(task.labels)
            if len(task.output_specs) > 1 or task.primary.kind != "categorical":
                labels = "; ".join(f"{s.name} ({s.kind})" for s in task.output_specs)
            print(f"{name:18} {labels}")
        return 0
    if not args.name:
        raise ConfigError("'templates show' needs a template name", fix="run 'llm-annotator templates list'")
    path = Path(args.name)
    if not (path.suffix == ".jinja" and path.is_file()):  # a template file, else a built-in name
        path = builtin_dir() / f"{args.name}.jinja"
    if not path.is_file():
        load_task(args.name)  # raises the unknown-task error with the list of names
    print(path.read_text(encoding="utf-8"), end="")
    return 0
