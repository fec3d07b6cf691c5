"""The commands that run a job: ``annotate``, ``plan``, ``batch``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_annotator.core.errors import ConfigError

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


def job_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="input table: .csv, .tsv, .jsonl, .json or .parquet")
    p.add_argument("-t", "--task", default="classification",
                   help="built-in task name (see 'templates list') or path to a .jinja template")
    p.add_argument("--labels", help="comma-separated label set (required by 'classification')")
    p.add_argument("-m", "--model", dest="models", action="append", metavar="MODEL[,KEY=VALUE...]",
                   help="an annotator: a LiteLLM model string, repeatable (default: local/smollm2-135m, offline); "
                        "after commas its own settings, e.g. 'gpt-4o,task=emotion_context,temperature=0.7' "
                        f"(keys: {', '.join(MODEL_KEYS)}; media as audio+image); an annotator with its own task is "
                        "named MODEL/TASK")
    p.add_argument("-k", "--samples", type=int, default=1, help="answers per item and model (default 1)")
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature (default 1.0)")
    p.add_argument("--max-tokens", type=int, default=None, help="answer length limit (default: the task's)")
    p.add_argument("--id-column", help="column holding unique item ids (default: hash of the row)")
    p.add_argument("--context", type=int, default=None,
                   help="previous turns of the dialogue given as context (default: the task's)")
    p.add_argument("--map", action="append", metavar="FIELD=COLUMN",
                   help="feed a template field from a differently named column, repeatable")
    p.add_argument("--api-base", help="API base URL for every model (else LiteLLM's environment)")
    p.add_argument("--media-root", metavar="DIR",
                   help="folder the task's media paths are relative to (default: the data file's folder)")
    p.add_argument("--cache-dir", help="answer cache directory (default: $LLM_ANNOTATOR_CACHE_DIR or the user cache)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the answer cache")
    p.add_argument("--price", metavar="IN,OUT",
                   help="US dollars per million input and output tokens, in place of LiteLLM's price (needed for "
                        "models it has none for; media are priced by it where it has an audio or image price)")


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


#: Settings an annotator given with -m may take after its model string.
MODEL_KEYS = ("task", "name", "temperature", "top_p", "max_tokens", "api_base", "concurrency", "media")


def _model_entry(text: str) -> str | dict[str, Any]:
    """``MODEL[,KEY=VALUE...]`` as the library takes an annotator."""
    model, *pairs = [part.strip() for part in text.split(",")]
    if not pairs:
        return model
    entry: dict[str, Any] = {"model": model}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in MODEL_KEYS or not value.strip():
            raise ConfigError(f"-m {text!r}: {pair!r} is not KEY=VALUE with a key of {', '.join(MODEL_KEYS)}",
                              fix="write e.g. -m 'gpt-4o,task=emotion_context,temperature=0.7' (several media "
                                  "kinds as media=audio+image)")
        value = value.strip()
        entry[key] = value.split("+") if key == "media" else value
    return entry


def _models(args: argparse.Namespace) -> Any:
    """The -m annotators as the library takes them, with the router config and price."""
    router = getattr(args, "router", None)
    price = _price(args.price)
    retries = getattr(args, "max_retries", None)
    if retries is not None and retries < 0:
        raise ConfigError(f"--max-retries {retries} cannot be negative", fix="pass 0 or more")
    entries = [_model_entry(m) for m in args.models] if args.models else None
    if not router and price is None and retries is None:
        return entries
    names = entries or []
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
    return [{**extra, **(m if isinstance(m, dict) else {"model": m})} for m in names]


def _job_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "labels": [x.strip() for x in args.labels.split(",")] if args.labels else None,
        "id_column": args.id_column, "context": args.context, "columns": _pairs(args.map) or None,
        "temperature": args.temperature, "max_tokens": args.max_tokens, "api_base": args.api_base,
        "cache": False if args.no_cache else (args.cache_dir or True), "media_root": args.media_root,
    }


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
        tasks = [args.task] + [m["task"] for m in map(_model_entry, args.models or []) if isinstance(m, dict)
                               and "task" in m]  # an annotator's own task may need dialogue context too
        big = args.context == 0 or not any(load_task(t, labels).context_window for t in tasks)
    return big


def cmd_annotate(args: argparse.Namespace) -> int:
    from llm_annotator.api import annotate

    task_name = Path(args.task).stem
    out = Path(args.out) if args.out else Path("runs") / f"{Path(args.data).stem}_{task_name}"
    models = _models(args)
    options = {"samples": args.samples, "out": out, "overwrite": args.overwrite, "concurrency": args.concurrency,
               "budget_usd": args.budget_usd,
               "timeout": args.timeout, "shard": args.shard, "progress": False if args.quiet else None,
               "workers": args.workers, "ray": args.ray,
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
    print(f"{m['data']['n_items']} items x {len(m['models'])} annotator(s) x {samples} sample(s): "
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
    for name in ("votes.jsonl", "labels.csv", "labels.jsonl", "explanations.csv", "run.json"):
        if name != "explanations.csv" or (out / name).exists():
            print(f"  {out / name}")
    _reasons(m)
    _output_reasons(m)


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


def _output_reasons(m: dict[str, Any]) -> None:
    """For a task with several outputs: each output's valid votes, and why the others hold no value."""
    outputs = (m["counts"].get("by_output") or {})
    asked = m["counts"].get("votes", 0)
    for name, figures in list(outputs.items())[1:]:  # the first output's are the run's own lines
        reasons = ", ".join(f"{kind} x{n}" for kind, n in figures.get("by_reason", {}).items())
        print(f"  output {name}: {figures['valid']} valid of {figures.get('votes', asked)}"
              + (f"; {reasons}" if reasons else ""),
              file=sys.stderr if reasons else sys.stdout)


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
