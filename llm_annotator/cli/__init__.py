"""The ``llm-annotator`` command: a thin layer of printing over the library.

The parser and the dispatch live here; the commands in :mod:`~llm_annotator.cli.run`
(they run a job) and :mod:`~llm_annotator.cli.read` (they read a run).
"""

from __future__ import annotations

import argparse
import functools
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from llm_annotator.cli import read, run
from llm_annotator.cli.run import EXIT_CODES, EXIT_HELP, STREAM_AUTO_MB, job_arguments
from llm_annotator.core.errors import AnnotatorError, RunWarning


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
    job_arguments(p)
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
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="processes that make the job's calls, sharing its run directory, cache and budget (default 1)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="run the workers as Ray tasks on the cluster at ADDRESS ('local': this machine); the run "
                        "directory must be on storage every node sees (the 'ray' extra)")
    p.add_argument("--stream", action="store_true",
                   help="read the input in chunks and keep no votes in memory (automatic for inputs over "
                        f"{STREAM_AUTO_MB} MB without dialogue context); same run directory")
    p.add_argument("--batch", action="store_true",
                   help="submit the requests as provider batch jobs (half price, within 24 h) and return; "
                        "then 'batch collect RUN_DIR'")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("plan", help="tokens and dollars of a job, before any call")
    job_arguments(p)
    p.add_argument("--batch", action="store_true", help="price the requests as a provider batch job")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")

    p = sub.add_parser("agree", help="agreement between label columns of a table, or the annotators of a run")
    p.add_argument("source", help="a run directory, or a table (.csv, .jsonl, .parquet)")
    p.add_argument("--columns", nargs="+", metavar="COLUMN",
                   help="label columns as annotators (needed for a table; added to a run's models)")
    p.add_argument("--gold", action="append", metavar="[OUTPUT=]COLUMN",
                   help="column holding reference labels (accuracy, macro-F1, UAR, kappa, calibration; MAE, "
                        "Pearson, CCC for ordinal and numeric outputs; F1 and Jaccard for multi-label ones); "
                        "COLUMN alone is the first output's, OUTPUT=COLUMN another's; repeatable")
    p.add_argument("--output", action="append", metavar="NAME",
                   help="the task's output to measure (repeatable; default: every output)")
    p.add_argument("--labels", help="comma-separated label set (default: the run's task, or every value seen)")
    p.add_argument("--id-column", help="column holding unique item ids")
    p.add_argument("--level", choices=["nominal", "ordinal", "interval"],
                   help="Krippendorff's alpha level of measurement (default: the output's kind: nominal for "
                        "categorical and multi-label, ordinal, interval for numeric)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap rounds for intervals (0: none)")
    p.add_argument("--out", help="where to write agreement.json (default: RUN/agreement.json or ./agreement.json)")

    p = sub.add_parser("report", help="self-contained HTML report of a run (plots need the 'report' extra)")
    p.add_argument("run", help="a run directory written by 'annotate'")
    p.add_argument("--gold", action="append", metavar="[OUTPUT=]COLUMN",
                   help="input column holding reference labels: COLUMN alone is the first output's, "
                        "OUTPUT=COLUMN another output's; repeatable")
    p.add_argument("--columns", nargs="+", metavar="COLUMN", help="input label columns to include as annotators")
    p.add_argument("--out", help="HTML file to write (default: RUN/report.html)")

    p = sub.add_parser("review", help="export the items people should check next (CSV and Label Studio JSON), "
                                      "or import the reviewers' answers (--import)")
    p.add_argument("run", help="a run directory written by 'annotate'")
    p.add_argument("-n", "--items", type=int, default=100, help="how many items (default 100)")
    p.add_argument("--strategy", default="random", choices=["random", "interval", "confidence", "disagreement"],
                   help="how the items are chosen (default random): random draws uniformly, interval at random "
                        "weighted towards uncertain items (both let the answers stand for the corpus); confidence "
                        "takes the least confident, disagreement the most disputed first (they find errors, but "
                        "calibration and corpus estimates cannot use them). No item is chosen twice")
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
    p.add_argument("--strategy", default="random", choices=["random", "interval", "confidence", "disagreement"],
                   help="how the next items to review are chosen, as 'review' would choose them (default random)")
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


COMMANDS = {"annotate": run.cmd_annotate, "plan": run.cmd_plan, "batch": run.cmd_batch, "agree": read.cmd_agree,
            "report": read.cmd_report, "review": read.cmd_review, "trust": read.cmd_trust, "merge": read.cmd_merge,
            "cache": read.cmd_cache, "templates": read.cmd_templates}


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


__all__ = ["COMMANDS", "EXIT_CODES", "EXIT_HELP", "STREAM_AUTO_MB", "build_parser", "main", "reference_markdown"]
