"""The ``llm-annotator`` command: a thin layer of printing over the library."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_annotator.core.errors import AnnotatorError, ConfigError, RunWarning

#: Inputs larger than this are streamed by the CLI (see llm_annotator.api.annotate_stream).
STREAM_AUTO_MB = 64

#: The exit status of a run, from the status run.json records. 1 is left to crashes
#: (an uncaught exception), 2 to errors found before the job starts.
EXIT_CODES = {"complete": 0, "batch_pending": 0, "failed": 3, "partial": 4, "stopped_by_budget": 5}
EXIT_HELP = ("exit status: 0 complete (or batches submitted); 2 bad arguments, input or set-up, found before "
             "any call; 3 failed (no valid vote, or an error no retry mends, e.g. an unknown model); "
             "4 partial (some requests failed: re-run to ask them again); 5 stopped_by_budget; "
             "130 interrupted. The reasons are printed last, to stderr, and kept in run.json.")


def _pairs(values: Sequence[str] | None) -> dict[str, str]:
    out = {}
    for value in values or []:
        if "=" not in value:
            raise ConfigError(f"--map {value!r} is not FIELD=COLUMN", fix="write e.g. --map Utterance=text")
        field, column = value.split("=", 1)
        out[field.strip()] = column.strip()
    return out


def _job_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="input table: .csv, .tsv, .jsonl, .json or .parquet")
    p.add_argument("-t", "--task", default="classification",
                   help="built-in task name (see 'templates list') or path to a .jinja template")
    p.add_argument("--labels", help="comma-separated label set (required by 'classification')")
    p.add_argument("-m", "--model", dest="models", action="append", metavar="MODEL",
                   help="LiteLLM model string, repeatable (default: local/smollm2-135m, offline)")
    p.add_argument("-k", "--samples", type=int, default=1, help="answers per item and model (default 1)")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature (default 1.0)")
    p.add_argument("--max-tokens", type=int, default=None, help="answer length limit (default: the task's)")
    p.add_argument("--id-column", help="column holding unique item ids (default: hash of the row)")
    p.add_argument("--context", type=int, default=None,
                   help="previous turns of the dialogue given as context (default: the task's)")
    p.add_argument("--map", action="append", metavar="FIELD=COLUMN",
                   help="feed a template field from a differently named column, repeatable")
    p.add_argument("--api-base", help="API base URL for every model (else LiteLLM's environment)")
    p.add_argument("--cache-dir", help="answer cache directory (default: $LLM_ANNOTATOR_CACHE_DIR or the user cache)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the answer cache")
    p.add_argument("--price", metavar="IN,OUT",
                   help="US dollars per million input and output tokens, for models LiteLLM has no price for")


def _price(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        price = [float(x) for x in text.split(",")]
    except ValueError:
        price = []
    if len(price) != 2 or min(price) < 0:
        raise ConfigError(f"--price {text!r} is not IN,OUT", fix="write e.g. --price 2.5,10 (dollars per million tokens)")
    return price


def _models(args: argparse.Namespace) -> Any:
    """The -m models as the library takes them, with the router config and price."""
    router = getattr(args, "router", None)
    price = _price(args.price)
    retries = getattr(args, "max_retries", None)
    if retries is not None and retries < 0:
        raise ConfigError(f"--max-retries {retries} cannot be negative", fix="pass 0 or more")
    if not router and price is None and retries is None:
        return args.models
    names = args.models or []
    if router and not names:
        raise ConfigError("--router needs the model_name(s) to use", fix="add -m MODEL_NAME from the router config")
    if not names:
        from llm_annotator.core.models import DEFAULT_MODEL

        names = [DEFAULT_MODEL]
    extra: dict[str, Any] = {}
    if router:
        extra["router"] = router
    if price is not None:
        extra["price"] = price
    if retries is not None:
        extra["max_retries"] = retries
    return [{"model": m, **extra} for m in names]


def _job_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "labels": [x.strip() for x in args.labels.split(",")] if args.labels else None,
        "id_column": args.id_column, "context": args.context, "columns": _pairs(args.map) or None,
        "temperature": args.temperature, "max_tokens": args.max_tokens, "api_base": args.api_base,
        "cache": False if args.no_cache else (args.cache_dir or True),
    }


def build_parser(width: int | None = None) -> argparse.ArgumentParser:
    formatter: Any = argparse.HelpFormatter
    if width is not None:
        formatter = functools.partial(argparse.HelpFormatter, width=width)
    parser = argparse.ArgumentParser(
        prog="llm-annotator", formatter_class=formatter,
        description="Label datasets with large language models; soft labels, confidence, agreement, cost.")
    parser.add_argument("--version", action="version", version="%(prog)s 0.1.0")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")

    class _Sub:
        @staticmethod
        def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
            return subparsers.add_parser(name, formatter_class=formatter, **kwargs)

    sub = _Sub()

    p = sub.add_parser("annotate", help="annotate a dataset; writes votes.jsonl, labels.csv/.jsonl, run.json",
                       epilog=EXIT_HELP)
    _job_arguments(p)
    p.add_argument("-o", "--out", help="run directory (default: runs/DATA_TASK); a re-run of the same job resumes in it")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the job the run directory holds when it is another job (else refused)")
    p.add_argument("--concurrency", type=int, default=None, help="requests in flight per model (default 16)")
    p.add_argument("--budget-usd", type=float, default=None,
                   help="the most the job may spend, across every run into its directory")
    p.add_argument("--timeout", type=float, default=None, help="seconds before a request is abandoned and retried (default 120)")
    p.add_argument("--max-retries", type=int, default=None,
                   help="retries of a request that failed for a reason that may pass (default 6)")
    p.add_argument("--router", metavar="CONFIG.yaml",
                   help="LiteLLM Router config (model_list, fallbacks, rpm/tpm); each -m names a model_name in it")
    p.add_argument("--shard", metavar="I/N", help="annotate only shard I of N (item-hash ranges); merge with 'merge'")
    p.add_argument("--stream", action="store_true",
                   help="read the input in chunks and keep no votes in memory (automatic for inputs over "
                        f"{STREAM_AUTO_MB} MB without dialogue context); same run directory")
    p.add_argument("--batch", action="store_true",
                   help="submit the requests as provider batch jobs (half price, within 24 h) and return; "
                        "then 'batch collect RUN_DIR'")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("plan", help="tokens and dollars of a job, before any call")
    _job_arguments(p)
    p.add_argument("--batch", action="store_true", help="price the requests as a provider batch job")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")

    p = sub.add_parser("agree", help="agreement between label columns of a table, or the annotators of a run")
    p.add_argument("source", help="a run directory, or a table (.csv, .jsonl, .parquet)")
    p.add_argument("--columns", nargs="+", metavar="COLUMN",
                   help="label columns as annotators (needed for a table; added to a run's models)")
    p.add_argument("--gold", help="column holding reference labels (accuracy, macro-F1, UAR, kappa, calibration)")
    p.add_argument("--labels", help="comma-separated label set (default: the run's task, or every value seen)")
    p.add_argument("--id-column", help="column holding unique item ids")
    p.add_argument("--level", default="nominal", choices=["nominal", "ordinal", "interval"],
                   help="Krippendorff's alpha level of measurement (default nominal)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap rounds for intervals (0: none)")
    p.add_argument("--out", help="where to write agreement.json (default: RUN/agreement.json or ./agreement.json)")

    p = sub.add_parser("report", help="self-contained HTML report of a run (plots need the 'report' extra)")
    p.add_argument("run", help="a run directory written by 'annotate'")
    p.add_argument("--gold", help="input column holding reference labels")
    p.add_argument("--columns", nargs="+", metavar="COLUMN", help="input label columns to include as annotators")
    p.add_argument("--out", help="HTML file to write (default: RUN/report.html)")

    p = sub.add_parser("review", help="export the items people should check next (CSV and Label Studio JSON), "
                                      "or import the reviewers' answers (--import)")
    p.add_argument("run", help="a run directory written by 'annotate'")
    p.add_argument("-n", "--items", type=int, default=100, help="how many items (default 100)")
    p.add_argument("--strategy", default="interval", choices=["interval", "random", "confidence", "disagreement"],
                   help="how the items are chosen (default interval): interval draws at random, weighted towards "
                        "uncertain items, random draws uniformly (both let the answers stand for the corpus); "
                        "confidence takes the least confident, disagreement the most disputed first (they find "
                        "errors, but calibration and corpus estimates cannot use them)")
    p.add_argument("--seed", type=int, help="seed of the random strategies (default: the round's number)")
    p.add_argument("--text-column", help="input column shown to reviewers in Label Studio (default: the first text column)")
    p.add_argument("--out", help="output prefix (default: RUN/review → review.csv, review.label_studio.json)")
    p.add_argument("--import", dest="import_file", metavar="FILE",
                   help="record reviewers' answers as human:NAME votes: a Label Studio JSON or JSON-MIN export, "
                        "or the review CSV with its review_label column filled")
    p.add_argument("--reviewer", help="--import: the reviewer's name (a CSV without a reviewer column)")
    p.add_argument("--label-column", default="review_label",
                   help="--import: the CSV column of answers (default review_label)")

    p = sub.add_parser("trust", help="how far the labels hold against the reviewed items: agreement, calibration, "
                                     "corpus label shares with PPI intervals, error correlation, next items")
    p.add_argument("run", help="a run directory with imported reviews ('review --import')")
    p.add_argument("--gold", help="an input column of reference labels, instead of the reviewers' answers")
    p.add_argument("--level", type=float, default=0.9, help="confidence level of the intervals (default 0.9)")
    p.add_argument("--method", default="temperature", choices=["temperature", "isotonic", "histogram"],
                   help="calibration fitted on the reviewed items (default temperature)")
    p.add_argument("--strategy", default="interval", choices=["interval", "random", "confidence", "disagreement"],
                   help="how the next items to review are chosen (default interval)")
    p.add_argument("-n", "--next", type=int, default=10, help="how many next items to name (default 10)")
    p.add_argument("--out", help="JSON file to write (default: RUN/trust.json)")

    p = sub.add_parser("merge", help="merge the run directories of a sharded job into one")
    p.add_argument("runs", nargs="+", help="run directories of the shards")
    p.add_argument("--out", required=True, help="the merged run directory")

    p = sub.add_parser("batch", help="status of the batch jobs of a run, or collect their answers into it",
                       epilog="collect: " + EXIT_HELP)
    p.add_argument("action", choices=["status", "collect"])
    p.add_argument("run", help="a run directory written by 'annotate --batch'")
    p.add_argument("--wait", action="store_true", help="collect: poll until every batch has ended")
    p.add_argument("--poll", type=float, default=60.0, help="seconds between polls with --wait (default 60)")
    p.add_argument("--api-base", help="API base URL, if it differs from the one at submission")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("cache", help="inspect or clear the answer cache")
    p.add_argument("action", choices=["stats", "clear"])
    p.add_argument("--cache-dir", help="cache directory (default: $LLM_ANNOTATOR_CACHE_DIR or the user cache)")

    p = sub.add_parser("templates", help="list or show the built-in prompt templates")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("name", nargs="?", help="template name, for 'show'")
    return parser


def _should_stream(args: argparse.Namespace) -> bool:
    if args.stream:
        return True
    if args.context:
        return False
    try:
        big = Path(args.data).stat().st_size > STREAM_AUTO_MB * 1_000_000
    except OSError:
        return False
    if big:
        from llm_annotator.core.task import load_task

        labels = [x.strip() for x in args.labels.split(",")] if args.labels else None
        big = args.context == 0 or not load_task(args.task, labels).context_window
    return big


def cmd_annotate(args: argparse.Namespace) -> int:
    from llm_annotator.api import annotate

    task_name = Path(args.task).stem
    out = Path(args.out) if args.out else Path("runs") / f"{Path(args.data).stem}_{task_name}"
    models = _models(args)
    options = {"samples": args.samples, "out": out, "overwrite": args.overwrite, "concurrency": args.concurrency,
               "budget_usd": args.budget_usd,
               "timeout": args.timeout, "shard": args.shard, "progress": False if args.quiet else None,
               **_job_options(args)}
    if _should_stream(args):
        from llm_annotator.api import annotate_stream

        manifest = annotate_stream(args.data, args.task, models, batch=args.batch, **options).manifest
    else:
        manifest = annotate(args.data, args.task, models, batch=args.batch, **options).manifest
    _summary(manifest, out, args.samples)
    return EXIT_CODES.get(manifest["status"], 0)


def _summary(m: dict[str, Any], out: Path, samples: int) -> None:
    c = m["counts"]
    print(f"{m['data']['n_items']} items x {len(m['models'])} model(s) x {samples} sample(s): "
          f"{c['valid']} valid votes, {c['invalid']} invalid answers, {c['errors']} votes without an answer "
          f"({c['failed_requests']} failed requests); "
          f"{c['cache_hits']} from cache, {c['resumed']} resumed; ${m['cost_usd']:.4f} spent in {m['wall_s']:.1f} s")
    if c.get("cache_write_failed"):
        print(f"the answer cache could not store {c['cache_write_failed']} answers (a full disk?); they are in "
              f"{out / 'votes.jsonl'}: free disk space or pass --cache-dir", file=sys.stderr)
    if c.get("reparsed"):
        print(f"{c['reparsed']} recorded answers were judged again by the template's current parsing rules")
    if c.get("stale_dropped"):
        print(f"{c['stale_dropped']} recorded votes were for other parameters or another endpoint: replaced "
              "(from the cache where it held them, else asked)")
    if c.get("failed_before"):
        print(f"{c['failed_before']} votes that failed in an earlier run were asked again")
    if m["status"] == "stopped_by_budget":
        print(f"stopped by the budget: {c['not_issued']} votes not requested; raise --budget-usd and re-run to finish")
    if m["status"] == "batch_pending":
        running = [b for b in m["batches"] if not b["collected"] and b["status"] != "abandoned"]
        print(f"{c['in_batch']} votes wait in {len(running)} batch job(s) "
              f"({', '.join(str(b['id']) for b in running)}); run 'llm-annotator batch collect {out}' later")
    for name in ("votes.jsonl", "labels.csv", "labels.jsonl", "run.json"):
        print(f"  {out / name}")
    _reasons(m)


def _reasons(m: dict[str, Any]) -> None:
    """The last lines of a run that did not complete: what failed, how often, an example, the fix."""
    status, c = m["status"], m["counts"]
    if status not in ("failed", "partial") and not m.get("failures"):
        return
    err = sys.stderr
    if status == "failed":
        print(f"run failed: {c['valid']} valid votes of {c['votes_requested']}", file=err)
    elif status == "partial":
        print(f"run partial: {c['errors']} votes have no answer yet; re-run the same command to ask them again",
              file=err)
    for annotator, valid in (c.get("valid_by_annotator") or {}).items():
        if not valid and status == "failed" and c["valid"]:
            print(f"  {annotator} gave no valid vote", file=err)
    for annotator, error in (m.get("stopped_by") or {}).items():
        print(f"  {annotator} stopped after an error no retry mends ({c.get('stopped', 0)} votes not asked): "
              f"{error}", file=err)
    for failure in (m.get("failures") or [])[:3]:
        example = f" e.g. {failure['example']}" if failure.get("example") else ""
        print(f"  {failure['kind']} x{failure['count']}:{example}", file=err)
        print(f"    fix: {failure['fix']}", file=err)


def cmd_batch(args: argparse.Namespace) -> int:
    from llm_annotator.api import collect, status

    if args.action == "status":
        for entry in status(args.run, api_base=args.api_base):
            counts = entry.get("counts") or {}
            done = f"{counts.get('completed')}/{counts.get('total')} done, {counts.get('failed')} failed" if counts else ""
            state = "collected" if entry["collected"] else entry["status"]
            print(f"{entry['id'] or '-':28} {entry['annotator']:24} {state:12} {entry['requests']:>7} requests  {done}")
        return 0
    result = collect(args.run, api_base=args.api_base, wait=args.wait, poll_s=args.poll,
                     progress=False if args.quiet else None)
    _summary(result.manifest, Path(args.run), result.manifest["parameters"]["samples"])
    return EXIT_CODES.get(result.manifest["status"], 0)


def cmd_plan(args: argparse.Namespace) -> int:
    from llm_annotator.engine.plan import plan

    result = plan(args.data, args.task, _models(args), samples=args.samples, batch=args.batch, **_job_options(args))
    if args.json:
        print(json.dumps(result.model_dump(), indent=2))
    else:
        print(result.table())
    return 0


def cmd_agree(args: argparse.Namespace) -> int:
    from llm_annotator.analysis.agreement import format_report, to_json
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
    figures = result.agreement(gold=args.gold, level=args.level, bootstrap=args.bootstrap)
    print(format_report(figures, gold=args.gold))
    out = Path(args.out) if args.out else default_out
    from llm_annotator.store.files import write_atomic

    write_atomic(out, to_json(figures))
    print(f"wrote {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from llm_annotator.outputs.report import write_report
    from llm_annotator.outputs.result import AnnotationResult

    result = AnnotationResult.load(args.run)
    if args.columns:
        result = result.with_columns(args.columns)
    out = write_report(result, args.out or Path(args.run) / "report.html", gold=args.gold)
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
            if written["calibrated_on"] else "; not calibrated (needs 20 reviewed items drawn at random by "
                                             "--strategy interval or random, and the trust extra)"))
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


COMMANDS = {"annotate": cmd_annotate, "plan": cmd_plan, "agree": cmd_agree, "report": cmd_report,
            "review": cmd_review, "trust": cmd_trust, "merge": cmd_merge, "batch": cmd_batch, "cache": cmd_cache, "templates": cmd_templates}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--markdown"]:
        print(reference_markdown(), end="")
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():  # a failed run is told by the last lines and the exit status
            warnings.simplefilter("ignore", RunWarning)
            return COMMANDS[args.command](args)
    except AnnotatorError as exc:
        print(f"llm-annotator: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llm-annotator: interrupted; answers so far are cached, re-run the same command to resume",
              file=sys.stderr)
        return 130



def reference_markdown() -> str:
    """docs/cli.md, generated from the parser (a test fails when the file drifts)."""
    parser = build_parser(width=100)  # argparse wraps to the terminal: fix the width
    parts = ["# Command-line reference", "",
             "Generated from the parser by `python -m llm_annotator.cli --markdown > docs/cli.md`;",
             "a test fails when this page and the CLI disagree.", "",
             "```", parser.format_help().rstrip(), "```", ""]
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        choices: Any = action.choices
        for name, sub in choices.items():
            parts += [f"## llm-annotator {name}", "", "```", sub.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
