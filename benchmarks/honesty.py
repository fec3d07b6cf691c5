"""Failures told, inputs and servers survived, keys kept: the figures of issue 14, counted.

    python benchmarks/honesty.py [--jobs 2]

Every figure is counted here from real runs, the library's ``annotate`` in this process
(and in child processes where the terminal is checked) and the CLI
``python -m llm_annotator annotate ...`` in subprocesses, against the loopback
OpenAI-compatible server ``llm_annotator.testing.FakeOpenAI`` (127.0.0.1 only; every
file in a temporary directory, removed at the end):

1. inputs: column types, column names that collide with output columns, Unicode,
   malformed rows; each run went through, was refused before any call in one line, or
   crashed (after a paid answer: an exception, or no ``labels.csv``/``run.json``);
2. servers: every hostile answer scripted in ``tests/test_hostile_server.py`` and more;
   crashes after a paid answer, and the status each run ended with;
3. exit codes: CLI runs of failure scenarios; how many exited 0, and whether each exit
   code agrees with ``run.json``'s status (docs/votes.md);
4. credentials: a canary key given every way, against servers that echo it back; every
   byte of the run and cache directories, stdout, stderr and exception texts grepped for
   it (raw, percent-encoded, Base64).

A *paid* answer is an HTTP 200 carrying a completion (a provider bills it), as opposed to
an error status, an error object or a dropped connection. Writes
benchmarks/results/honesty.json; exits 1 when a figure expected to be 0 is not.
"""

from __future__ import annotations

import argparse
import base64
import collections
import concurrent.futures
import csv
import datetime as dt
import decimal
import email.utils
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_proxy, None)  # loopback only: nothing goes through a proxy
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
os.environ["OPENAI_API_KEY"] = "sk-honesty-placeholder"  # never a key of this machine

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from llm_annotator import annotate, annotate_stream  # noqa: E402
from llm_annotator.core.errors import AnnotatorError, RunWarning  # noqa: E402
from llm_annotator.testing import (  # noqa: E402
    DROP,
    FakeOpenAI,
    Reply,
    attempts,
    echoing_responder,
    sampling_responder,
    user_text,
)

RESULTS = ROOT / "benchmarks" / "results" / "honesty.json"
LABELS = ["positive", "negative", "neutral"]
OK = '{"sentiment": "positive"}'
EXIT_CODES = {"complete": 0, "batch_pending": 0, "failed": 3, "partial": 4, "stopped_by_budget": 5}
NO_LLAMA = ("import sys; sys.modules['llama_cpp'] = None; from llm_annotator.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
CANARY = "sk-canary-5f1e2d3c4b5a69788796a5b4"
CANARY_FORMS = {
    "raw": CANARY,
    "percent-encoded": quote(CANARY, safe=""),
    "base64": base64.b64encode(CANARY.encode()).decode(),
    "base64 of user:key": base64.b64encode(f"user:{CANARY}".encode()).decode(),
    "head (first 16 characters)": CANARY[:16],
}

warnings.filterwarnings("ignore", message="Pydantic serializer warnings")  # LiteLLM on hostile usage


# -- the server -------------------------------------------------------------------------------

def paid_reply(reply: Any) -> bool:
    """Whether a provider would bill this reply: a 200 that carries a completion."""
    if not isinstance(reply, Reply):
        return True
    if reply.drop or reply.echo or reply.status != 200:
        return False
    return reply.body is None or b'"choices"' in reply.body


class Server:
    """FakeOpenAI with a responder that can be swapped between runs; counts paid answers."""

    def __init__(self, responder: Callable[[dict], Any] | None = None) -> None:
        self.responder = responder or sampling_responder(LABELS, "sentiment")
        self.paid = 0
        self._lock = threading.Lock()
        self.fake = FakeOpenAI(self._respond).start()

    def _respond(self, request: dict) -> Any:
        reply = self.responder(request)
        if paid_reply(reply):
            with self._lock:
                self.paid += 1
        return reply

    @property
    def url(self) -> str:
        return self.fake.url

    @property
    def calls(self) -> int:
        return self.fake.calls

    def stop(self) -> None:
        self.fake.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sentences(n: int) -> list[dict[str, str]]:
    return [{"id": f"s{i}", "text": f"sentence number {i} about topic {i % 7}"} for i in range(n)]


def number(request: dict) -> int:
    text = user_text(request)
    return int(text.split("number ")[1].split()[0]) if "number " in text else 0


# -- one run, classified ----------------------------------------------------------------------

@dataclass
class Case:
    section: str
    name: str
    via: str  # library | cli
    outcome: str = ""
    status: str | None = None  # run.json's status, when there is one
    exit_code: int | None = None
    calls: int = 0
    paid: int = 0
    seconds: float = 0.0
    detail: str = ""


def run_status(out: Path) -> str | None:
    try:
        return str(json.loads((out / "run.json").read_text(encoding="utf-8"))["status"])
    except (OSError, ValueError, KeyError):
        return None


def classify(case: Case, out: Path, *, failed: bool, refusal: bool, expect_refusal: bool,
             problem: str | None) -> None:
    """Outcome of a run that ``failed`` (an exception, or an exit code that is no run status)
    or returned; ``refusal``: the failure was a one-line error (AnnotatorError / exit 2)."""
    case.status = run_status(out)
    written = (out / "labels.csv").exists() and case.status not in (None, "running")
    if not failed:
        if not written:
            case.outcome = "crash after a paid answer" if case.paid else "crash before a paid answer"
            case.detail = f"returned without labels.csv/run.json (status {case.status}); " + case.detail
        elif problem:
            case.outcome = "went through, outputs damaged"
            case.detail = problem + "; " + case.detail
        else:
            case.outcome = "went through, though a refusal was expected" if expect_refusal else "went through"
    elif case.paid:
        case.outcome = "crash after a paid answer"
    elif refusal:
        if case.calls:
            case.outcome = "refused in one line after an unpaid call"
        else:
            case.outcome = "refused before any call, in one line"
        if (out / "labels.csv").exists() or (out / "run.json").exists():
            case.outcome += ", yet wrote files"
    else:
        case.outcome = "crash before a paid answer"


def labels_problem(out: Path, n_items: int | None) -> str | None:
    """A labels.csv that is not a table of ``n_items`` rows of equal length."""
    try:
        with (out / "labels.csv").open(encoding="utf-8", newline="") as handle:
            table = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return f"labels.csv unreadable: {exc}"
    if any(len(row) != len(table[0]) for row in table):
        return "labels.csv rows of unequal length"
    if n_items is not None and len(table) != n_items + 1:
        return f"labels.csv has {len(table) - 1} rows for {n_items} items"
    return None


def library_case(server: Server, section: str, name: str, run: Callable[[Path, Path], Any], root: Path,
                 *, responder: Callable[[dict], Any] | None = None, expect_refusal: bool = False,
                 n_items: int | None = None, check: Callable[[Path], str | None] | None = None) -> Case:
    """``run(out, cache)`` calls annotate in this process against ``server``."""
    case = Case(section, name, "library")
    work = Path(tempfile.mkdtemp(dir=root))
    out, cache = work / "run", work / "cache"
    server.responder = responder or sampling_responder(LABELS, "sentiment")
    calls, paid = server.calls, server.paid
    started = time.perf_counter()
    failed = refusal = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RunWarning)
        try:
            run(out, cache)
        except AnnotatorError as exc:
            failed, refusal = True, "\n" not in str(exc)
            case.detail = f"{type(exc).__name__}: {str(exc)[:300]}"
        except Exception as exc:
            failed = True
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            case.detail = (f"{type(exc).__name__}: {str(exc)[:200]} at {Path(frame.filename).name}:"
                           f"{frame.lineno} {frame.name}")
    case.seconds = round(time.perf_counter() - started, 2)
    case.calls, case.paid = server.calls - calls, server.paid - paid
    said = [str(w.message) for w in caught if issubclass(w.category, RunWarning)]
    if said:
        case.detail = (case.detail + "; " if case.detail else "") + "RunWarning: " + said[0][:200]
    problem = None
    if not failed and (out / "labels.csv").exists():
        problem = labels_problem(out, n_items) or (check(out) if check else None)
    classify(case, out, failed=failed, refusal=refusal, expect_refusal=expect_refusal, problem=problem)
    shutil.rmtree(work, ignore_errors=True)
    return case


def cli(args: list[str], *, env: dict[str, str] | None = None, python: list[str] | None = None,
        timeout: float = 180) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, *(python or ["-m", "llm_annotator"]), *map(str, args)]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                              env={**os.environ, **(env or {})}, errors="backslashreplace")
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(command, 124, str(exc.stdout or ""), f"hung: {exc}")


def cli_case(section: str, name: str, args: Callable[[str, Path, Path], list[str]], root: Path, *,
             responder: Callable[[dict], Any] | None = None, expect_refusal: bool = False,
             n_items: int | None = None, python: list[str] | None = None, down: bool = False) -> Case:
    """``args(url, out, cache)``: the CLI's arguments; a server of its own (or none: ``down``)."""
    case = Case(section, name, "cli")
    work = Path(tempfile.mkdtemp(dir=root))
    out, cache = work / "run", work / "cache"
    server = None if down else Server(responder)
    url = f"http://127.0.0.1:{free_port()}/v1" if server is None else server.url
    started = time.perf_counter()
    proc = cli(args(url, out, cache), env={"LLM_ANNOTATOR_CACHE_DIR": str(cache)}, python=python)
    case.seconds = round(time.perf_counter() - started, 2)
    if server is not None:
        case.calls, case.paid = server.calls, server.paid
        server.stop()
    case.exit_code = proc.returncode
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    failed = proc.returncode not in EXIT_CODES.values()
    refusal = (proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("llm-annotator: error:"))
    case.detail = (lines[-1][:300] if lines else "") + (" [Traceback on stderr]" if "Traceback" in proc.stderr else "")
    problem = None
    if not failed and (out / "labels.csv").exists():
        problem = labels_problem(out, n_items)
        status = run_status(out)
        if status is not None and status in EXIT_CODES and EXIT_CODES[status] != proc.returncode:
            problem = f"exit {proc.returncode} with run.json status {status}"
        if "Traceback" in proc.stderr:
            problem = "a traceback on stderr"
    classify(case, out, failed=failed, refusal=refusal, expect_refusal=expect_refusal, problem=problem)
    shutil.rmtree(work, ignore_errors=True)
    return case


class Runner:
    """Runs library cases in this process and CLI cases ``jobs`` at a time; prints progress."""

    def __init__(self, root: Path, jobs: int) -> None:
        self.root = root
        self.server = Server()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs)
        self.cases: list[Case] = []
        self._lock = threading.Lock()

    def record(self, case: Case) -> Case:
        with self._lock:
            self.cases.append(case)
            mark = "" if case.outcome in ("went through", "refused before any call, in one line") else "  <--"
            print(f"  [{len(self.cases):3d}] {case.section:8s} {case.via:7s} {case.name[:52]:52s} "
                  f"{case.outcome}{' / ' + case.status if case.status else ''}"
                  f"{'' if case.exit_code is None else f' / exit {case.exit_code}'}{mark}", flush=True)
        return case

    def library(self, section: str, name: str, run: Callable[[Path, Path], Any], **options: Any) -> Case:
        return self.record(library_case(self.server, section, name, run, self.root, **options))

    def cli(self, section: str, name: str, args: Callable[[str, Path, Path], list[str]],
            **options: Any) -> concurrent.futures.Future[Case]:
        return self.pool.submit(lambda: self.record(cli_case(section, name, args, self.root, **options)))


# -- 1. inputs ----------------------------------------------------------------------------------

TEXT = ["a good day", "a bad day", "a day"]
TZ = dt.timezone(dt.timedelta(hours=-3, minutes=-30))
DTYPES: dict[str, Any] = {
    "int": [1, 2, 3], "float with NaN": [1.5, float("nan"), -0.0], "inf": [float("inf"), -float("inf"), 1e300],
    "bool": [True, False, True], "all None": [None, None, None], "int64 extremes": [2**63 - 1, -(2**63), 0],
    "date": [dt.date(2024, 1, 1), dt.date(1900, 2, 28), None], "time": [dt.time(12, 30), dt.time(0, 0, 0, 1), None],
    "datetime": pd.to_datetime(["2024-01-01 10:00", "2024-02-29 00:00", None]),
    "datetime tz (Europe/Paris)": pd.to_datetime(["2024-01-01", "2024-06-01", "2024-12-31"]).tz_localize("Europe/Paris"),
    "datetime fixed offsets": [dt.datetime(2024, 1, 1, tzinfo=TZ), dt.datetime(2024, 1, 2, tzinfo=dt.UTC), None],
    "duration (timedelta)": pd.to_timedelta([1, -90, 86400 * 3], unit="s"),
    "decimal": [decimal.Decimal("1.10"), decimal.Decimal("-2E+3"), None],
    "bytes": [b"\x00\xff", b"abc", None], "list": [[1, 2], [], None], "list of text": [["a", "b,c"], ['"q"'], []],
    "struct": [{"a": 1, "b": "x"}, {"a": 2, "b": None}, None], "list of structs": [[{"a": [1.5]}], [{"a": []}], []],
    "categorical": pd.Categorical(["x", "y", None]), "nullable Int64": pd.array([1, None, 3], dtype="Int64"),
    "nullable boolean": pd.array([True, None, False], dtype="boolean"),
    "string dtype": pd.array(["a", None, "c"], dtype="string"),
    "period": pd.period_range("2024-01", periods=3, freq="M"), "interval": pd.interval_range(0, 3),
}
PYTHON_ONLY: dict[str, Any] = {
    "uuid": [uuid.UUID(int=k) for k in range(3)], "complex": [1 + 2j, 0j, None], "tuple": [(1, "a"), (), None],
    "set": [{1}, set(), None], "numpy array cells": [np.arange(2), np.zeros(0), None],
    "numpy scalars": [np.int8(3), np.float32(0.5), np.datetime64("2024-01-01T00:00")],
}
OUTPUT_NAMES = ["item_id", "label", "confidence", "margin", "entropy_confidence", "p_positive", "p_negative",
                "n_valid", "n_requested", "valid_share", "soft_label", "context", "labels", "input_item_id",
                "input_label", ""]
UNICODE = {"emoji + ZWJ": "😀 👩‍👩‍👧", "RTL + marks": "مرحبا\u200f\u202e", "combining": "e\u0301",
           "NUL": "a\x00b", "ESC control": "a\x1b[31mb", "inner BOM": "\ufeffx",
           "noncharacters": "\ufdd0\uffff\U0010ffff", "private use": "\ue000\U000f0000",
           "LS/PS/NEL": "a\u2028b\u2029c\x85d", "bare CR": "a\rb", "CRLF": "a\r\nb", "formula": "=1+2",
           "leading tab": "\tx", "quotes+commas": 'a "b", c', "CJK/fullwidth": "ＡＢＣ 日本語",
           "astral math": "𝔘𝔫𝔦", "150k characters": "x" * 150_000}
SURROGATE_LINES = {"lone high surrogate": '{"text": "\\ud800"}', "lone low surrogate": '{"text": "x\\udc00"}',
                   "lone surrogate, other field": '{"text": "ok", "o": "\\udfff"}',
                   "lone surrogate in a key": '{"text": "ok", "\\ud800": 1}',
                   "lone surrogate nested": '{"text": "ok", "o": {"a": ["\\ud800"]}}'}
BAD_BYTES = {"latin-1 bytes": b"text\ncaf\xe9\n", "UTF-16": "text\nhi\n".encode("utf-16"),
             "UTF-8-encoded surrogate": b"text\n\xed\xa0\x80\n"}
MALFORMED_CSV = {"a row with a field more": "id,text\n1,a\n2,b,c\n",
                 "first row with a field more": "id,text\n1,a,x\n2,b\n",
                 "every row with a field more": "id,text\n1,a,x\n2,b,y\n",
                 "a row with a field less": "id,text,o\n1,a,x\n2,b\n3,c,z\n",
                 "last row with one field": "id,text\n1,a\n2\n", "quote left open": 'id,text\n1,"a\n2,b\n',
                 "text after a closing quote": 'id,text\n1,"a"b\n',
                 "trailing delimiter everywhere": "id,text,\n1,a,\n2,b,\n"}
MALFORMED_JSONL = {"JSONL line not an object": '{"text": "a"}\n[1,2]\n',
                   "JSONL nested 100k deep": '{"text": "a"}\n' + "[" * 100000 + "\n",
                   "JSONL 5000-digit number": '{"text": "a", "n": ' + "1" * 5000 + "}\n",
                   "JSONL broken line": '{"text": "a"}\n{"text": \n'}


def lib_run(data: Any, *, stream: bool = False, **options: Any) -> Callable[[Path, Path], Any]:
    def run(out: Path, cache: Path) -> Any:
        call = annotate_stream if stream else annotate
        extra = {"chunk_rows": 2} if stream else {}
        return call(data, "sentiment", [{"model": "openai/fake", "concurrency": 4, "max_retries": 1}],
                    api_base=runner_url(), out=out, cache=cache, progress=False, **extra, **options)
    return run


_URL: dict[str, str] = {}


def runner_url() -> str:
    return _URL["url"]


def cli_annotate(data: Path, *extra: str) -> Callable[[str, Path, Path], list[str]]:
    return lambda url, out, cache: ["annotate", data, "-t", "sentiment", "-m", "openai/fake", "--api-base", url,
                                    "--out", out, "--cache-dir", cache, "--max-retries", "1", "-q", *extra]


def write_frame(frame: pd.DataFrame, path: Path) -> bool:
    try:
        if path.suffix == ".parquet":
            frame.to_parquet(path)
        elif path.suffix == ".jsonl":
            frame.to_json(path, orient="records", lines=True, date_format="iso", default_handler=str)
        else:
            frame.to_csv(path, index=False)
    except Exception:
        return False  # pandas cannot write this type in this format: not a case
    return True


def unicode_check(value: str) -> Callable[[Path], str | None]:
    def check(out: Path) -> str | None:
        first = json.loads((out / "labels.jsonl").read_text(encoding="utf-8").split("\n")[0])
        return None if first.get("other") == value else "the value changed on its way to labels.jsonl"
    return check


def inputs(runner: Runner) -> list[concurrent.futures.Future[Case]]:
    root = runner.root / "inputs"
    root.mkdir()
    futures = []
    cli_dtypes = {"date", "time", "datetime tz (Europe/Paris)", "duration (timedelta)", "decimal", "bytes", "list",
                  "struct", "categorical", "float with NaN"}
    # the CLI cases first: they run in the pool while the library cases run here
    for name in sorted(cli_dtypes):
        path = root / f"cli-{len(futures)}.parquet"
        if write_frame(pd.DataFrame({"text": TEXT, "extra": DTYPES[name]}), path):
            futures.append(runner.cli("input", f"dtype {name} / parquet", cli_annotate(path), n_items=3))
    for col in ["item_id", "label", "confidence", "context", "p_positive", "n_valid"]:
        path = root / f"cli-{len(futures)}.csv"
        pd.DataFrame([{"text": f"t{i}", col: f"v{i}"} for i in range(3)]).to_csv(path, index=False)
        futures.append(runner.cli("input", f"column {col!r} / csv", cli_annotate(path), n_items=3))
    path = root / "cli-surrogate.jsonl"
    path.write_text(SURROGATE_LINES["lone high surrogate"] + '\n{"text": "fine"}\n')
    futures.append(runner.cli("input", "unicode lone surrogate / jsonl", cli_annotate(path), expect_refusal=True))
    path = root / "cli-latin1.csv"
    path.write_bytes(BAD_BYTES["latin-1 bytes"])
    futures.append(runner.cli("input", "unicode latin-1 bytes / csv", cli_annotate(path), expect_refusal=True))
    for name in ["a row with a field more", "a row with a field less", "quote left open"]:
        path = root / f"cli-{len(futures)}.csv"
        path.write_text(MALFORMED_CSV[name])
        futures.append(runner.cli("input", f"{name} / csv", cli_annotate(path, "--id-column", "id"),
                                  expect_refusal=True))
    path = root / "cli-stream-more.csv"
    path.write_text(MALFORMED_CSV["a row with a field more"])
    futures.append(runner.cli("input", "a row with a field more / csv --stream",
                              cli_annotate(path, "--id-column", "id", "--stream"), expect_refusal=True))

    # column types
    for name, values in {**DTYPES, **PYTHON_ONLY}.items():
        frame = pd.DataFrame({"text": TEXT, "extra": values})
        runner.library("input", f"dtype {name} / DataFrame", lib_run(frame), n_items=3)
        runner.library("input", f"dtype {name} / list of dicts", lib_run(frame.to_dict(orient="records")), n_items=3)
        if name in PYTHON_ONLY:
            continue
        for fmt in ("parquet", "jsonl", "csv"):
            path = root / f"d{len(runner.cases)}.{fmt}"
            if not write_frame(frame, path):
                continue
            runner.library("input", f"dtype {name} / {fmt}", lib_run(path), n_items=3)
            if fmt == "parquet":
                runner.library("input", f"dtype {name} / parquet streamed", lib_run(path, stream=True), n_items=3)
    # column names that collide with output columns
    for col in OUTPUT_NAMES:
        rows = [{"text": f"t{i}", col: f"v{i}"} for i in range(3)]
        runner.library("input", f"column {col!r} / list", lib_run(rows), n_items=3)
        if col:
            path = root / f"n{len(runner.cases)}.csv"
            pd.DataFrame(rows).to_csv(path, index=False)
            runner.library("input", f"column {col!r} / csv streamed", lib_run(path, stream=True), n_items=3)
    runner.library("input", "column item_id as the id column",
                   lib_run([{"text": f"t{i}", "item_id": f"x{i}"} for i in range(3)], id_column="item_id"), n_items=3)
    runner.library("input", "column 'context' with context=2",
                   lib_run([{"text": "a", "context": "c", "Dialogue_ID": 1, "Utterance_ID": 0}], context=2),
                   expect_refusal=True)
    for name, content in {"CSV header names a column twice": "text,text\na,b\n",
                          "CSV header with an unnamed column": "text,\na,b\n"}.items():
        path = root / f"h{len(runner.cases)}.csv"
        path.write_text(content)
        runner.library("input", name, lib_run(path), expect_refusal=True)
    runner.library("input", "dict key 1 (int)", lib_run([{"text": "a", 1: "x"}]), n_items=1)
    runner.library("input", "dict key (1, 2) (tuple)", lib_run([{"text": "a", (1, 2): "x"}]), n_items=1)
    runner.library("input", "keys 1 and '1' in one row", lib_run([{"text": "a", 1: "x", "1": "y"}]),
                   expect_refusal=True)
    runner.library("input", "DataFrame with duplicate columns",
                   lib_run(pd.DataFrame([["a", "b"]], columns=["text", "text"])), expect_refusal=True)
    path = root / "dupkey.jsonl"
    path.write_text('{"text": "a", "text": "b"}\n')
    runner.library("input", "JSONL key twice in one object", lib_run(path), expect_refusal=True)
    # Unicode
    for name, value in UNICODE.items():
        rows = [{"text": "hello", "other": value}, {"text": "bye", "other": "plain"}]
        runner.library("input", f"unicode {name} / list", lib_run(rows), n_items=2, check=unicode_check(value))
        path = root / f"u{len(runner.cases)}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        runner.library("input", f"unicode {name} / jsonl", lib_run(path), n_items=2, check=unicode_check(value))
        path = root / f"u{len(runner.cases)}.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["text", "other"])
            writer.writeheader()
            writer.writerows(rows)
        runner.library("input", f"unicode {name} / csv", lib_run(path), n_items=2, check=unicode_check(value))
    for name, line in SURROGATE_LINES.items():
        path = root / f"s{len(runner.cases)}.jsonl"
        path.write_text(line + '\n{"text": "fine"}\n')
        runner.library("input", f"unicode {name} / jsonl", lib_run(path), expect_refusal=True)
    runner.library("input", "unicode lone surrogate / list", lib_run([{"text": "ok", "o": "\ud800"}]),
                   expect_refusal=True)
    path = root / "pair.jsonl"
    path.write_text('{"text": "\\ud83d\\ude00"}\n')
    runner.library("input", "unicode surrogate pair (escaped) / jsonl", lib_run(path), n_items=1)
    for name, raw in BAD_BYTES.items():
        path = root / f"b{len(runner.cases)}.csv"
        path.write_bytes(raw)
        runner.library("input", f"unicode {name} / csv", lib_run(path), expect_refusal=True)
    # malformed rows
    for name, content in MALFORMED_CSV.items():
        for stream in (False, True):
            path = root / f"m{len(runner.cases)}.csv"
            path.write_text(content)
            runner.library("input", f"{name}{' / streamed' if stream else ''}",
                           lib_run(path, stream=stream, id_column="id"), expect_refusal=True)
    for name, content in MALFORMED_JSONL.items():
        path = root / f"j{len(runner.cases)}.jsonl"
        path.write_text(content)
        runner.library("input", name, lib_run(path), expect_refusal=True)
    return futures


# -- 2. servers ---------------------------------------------------------------------------------

def http_date(offset_s: float) -> str:
    return email.utils.formatdate(time.time() + offset_s, usegmt=True)


def completion(choices: list[dict], **fields: Any) -> Reply:
    body = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "fake", "choices": choices,
            "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}, **fields}
    return Reply(body=json.dumps(body).encode())


def choice(content: Any, **fields: Any) -> dict:
    return {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}, **fields}


def once_then_ok(first: Callable[[], Reply]) -> Callable[[], Callable[[dict], Any]]:
    """Each prompt's first request gets ``first()``, every later one the answer."""
    return lambda: attempts(first(), then=OK)


def always(reply: Callable[[], Any]) -> Callable[[], Callable[[dict], Any]]:
    return lambda: (lambda request: reply())


def after_answers(k: int, reply: Reply) -> Callable[[], Callable[[dict], Any]]:
    """The first ``k`` requests are answered, then every request gets ``reply``
    (a key revoked, a model withdrawn, mid-run)."""
    def make() -> Callable[[dict], Any]:
        seen = {"n": 0}
        lock = threading.Lock()

        def respond(request: dict) -> Any:
            with lock:
                seen["n"] += 1
                n = seen["n"]
            return OK if n <= k else reply
        return respond
    return make


def error_object(code: str | None, message: str) -> Reply:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    return Reply(body=json.dumps({"error": error}).encode())


THREE = ['{"sentiment": "positive"}', '{"sentiment": "negative"}', '{"sentiment": "neutral"}']
BODIES = {
    "truncated JSON": (200, b'{"id": "x", "choices": [{"index": 0, "message": {"content": "{\\"senti'),
    "not JSON": (200, b"hello, I am a teapot"), "empty body": (200, b""), "JSON null": (200, b"null"),
    "JSON list": (200, b"[1, 2, 3]"), "HTML login page": (200, b"<html><body><form>Sign in</form></body></html>"),
    "HTML 502 page": (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
    "HTML 503 page": (503, b"<html><body>Service Unavailable</body></html>"),
}
ERROR_OBJECTS = {
    "model_not_found": ("model_not_found", "The model `fake` does not exist"),
    "model message only": (None, "The model `fake` does not exist or you do not have access to it"),
    "invalid_value": ("invalid_value", "Invalid value for 'temperature'"),
    "context_length_exceeded": ("context_length_exceeded", "This model's maximum context length is 8192 tokens"),
    "insufficient_quota": ("insufficient_quota", "You exceeded your current quota"),
    "rate_limit_exceeded": ("rate_limit_exceeded", "Rate limit reached for requests"),
    "server_error": (None, "The server had an error while processing your request"),
    "unknown": (None, "something odd happened"),
    "invalid_api_key": ("invalid_api_key", "Incorrect API key provided: sk-abc***xyz"),
}
LONE_SURROGATE_BODY = json.dumps({"choices": [choice("SURROGATE")],
                                  "usage": {"prompt_tokens": 9, "completion_tokens": 6}}).replace(
    "SURROGATE", '{\\"sentiment\\": \\"positive\\"} \\ud800').encode()
CHAOS = [
    lambda: Reply(status=429, headers={"Retry-After": "garbage"}),
    lambda: Reply(status=429, headers={"Retry-After": http_date(-60)}),
    lambda: Reply(status=429, headers={"retry-after-ms": "-5"}),
    lambda: Reply(status=503, body=b"<html>down</html>", headers={"Content-Type": "text/html"}),
    lambda: Reply(body=b'{"choices": [{"message": {"content": "{\\"sent'),
    lambda: Reply(body=b"<html>login</html>", headers={"Content-Type": "text/html"}),
    lambda: Reply(body=json.dumps({"error": {"message": "The server had an error", "code": None}}).encode()),
    lambda: Reply(content=OK, fields={"usage": {"prompt_tokens": 10**40, "completion_tokens": -1}}),
    lambda: Reply(content=OK, fields={"usage": DROP}),
    lambda: Reply(content=OK, fields={"choices": [{"finish_reason": "stop", "message": {"content": OK}}]}),
    lambda: Reply(content='{"sentiment": "positive", "pad": "' + "y" * 200_000 + '"}'),
    lambda: Reply(drop=True),
    lambda: Reply(status=500),
]


def chaos() -> Callable[[dict], Any]:
    asked: dict[int, int] = {}
    lock = threading.Lock()

    def respond(request: dict) -> Any:
        item = number(request)
        with lock:
            asked[item] = asked.get(item, 0) + 1
            first = asked[item] == 1
        return CHAOS[item % len(CHAOS)]() if first else OK
    return respond


def server_cases() -> list[tuple[str, Callable[[], Callable[[dict], Any]], dict[str, Any]]]:
    """(name, a factory of a fresh responder, options: items, samples, spec fields)."""
    cases: list[tuple[str, Callable[[], Callable[[dict], Any]], dict[str, Any]]] = []

    def add(name: str, make: Callable[[], Callable[[dict], Any]], **options: Any) -> None:
        cases.append((name, make, options))

    for name, headers in {"Retry-After 1 s": {"Retry-After": "1"}, "Retry-After 0.4 s": {"Retry-After": "0.4"},
                          "Retry-After negative": {"Retry-After": "-30"}, "Retry-After empty": {"Retry-After": ""},
                          "Retry-After garbage": {"Retry-After": "soon-ish, maybe"},
                          "Retry-After nan": {"Retry-After": "nan"}, "retry-after-ms 400": {"retry-after-ms": "400"},
                          "retry-after-ms negative": {"retry-after-ms": "-400"},
                          "retry-after-ms garbage + Retry-After": {"retry-after-ms": "x", "Retry-After": "0.3"}}.items():
        add(f"429, {name}, then answers", once_then_ok(lambda h=headers: Reply(status=429, headers=h)))
    add("429, Retry-After HTTP date in the past, then answers",
        once_then_ok(lambda: Reply(status=429, headers={"Retry-After": http_date(-3600)})))
    add("429, Retry-After HTTP date 2 s ahead, then answers",
        once_then_ok(lambda: Reply(status=429, headers={"Retry-After": http_date(2)})))
    for name, value in {"1e12": "1e12", "inf": "inf", "86400": "86400", "HTTP date next year": None}.items():
        add(f"429, Retry-After {name} (huge), then answers",
            once_then_ok(lambda v=value: Reply(status=429, headers={"Retry-After": v or http_date(365 * 86400)})))
    add("429, retry-after-ms 1e15 (huge), then answers",
        once_then_ok(lambda: Reply(status=429, headers={"retry-after-ms": "1e15"})))
    for name, usage in {"missing": DROP, "null": None, "partial": {"prompt_tokens": 9},
                        "negative": {"prompt_tokens": -9, "completion_tokens": -6},
                        "huge": {"prompt_tokens": 10**30, "completion_tokens": 10**30},
                        "zero completion tokens": {"prompt_tokens": 9, "completion_tokens": 0},
                        "strings": {"prompt_tokens": "nine", "completion_tokens": "6"}, "a list": [9, 6],
                        "fractional": {"prompt_tokens": 9.5, "completion_tokens": 6}}.items():
        add(f"usage {name}", always(lambda u=usage: Reply(content=OK, fields={"usage": u})))
    add("choices without index (n=3)", always(lambda: completion(
        [{k: v for k, v in choice(c).items() if k != "index"} for c in THREE])), samples=3)
    add("choices with duplicated index 0 (n=3)", always(lambda: completion([choice(c, index=0) for c in THREE])),
        samples=3)
    add("choices shuffled (n=3)", always(lambda: completion(
        [choice(c, index=i) for c, i in zip(THREE, [2, 0, 1], strict=True)])), samples=3)
    add("more choices than asked (5 for n=3)", always(lambda: completion([choice(OK, index=i) for i in range(5)])),
        samples=3)
    add("fewer choices than asked (1 for n=3)", always(lambda: completion([choice(OK)])), samples=3)
    add("choices empty list", always(lambda: Reply(content=OK, fields={"choices": []})))
    add("choices null", always(lambda: Reply(content=OK, fields={"choices": None})))
    add("choices missing", always(lambda: Reply(content=OK, fields={"choices": DROP})))
    add("message content null", always(lambda: completion([choice(None)])))
    add("message null", always(lambda: completion([{"index": 0, "finish_reason": "stop", "message": None}])))
    add("malformed logprobs and finish_reason", always(lambda: completion([choice(
        OK, logprobs={"content": [{"token": None, "logprob": "x", "top_logprobs": None}]}, finish_reason=7)])),
        logprobs=True)
    for name, (code, message) in ERROR_OBJECTS.items():
        add(f"error object in a 200: {name}", always(lambda c=code, m=message: error_object(c, m)))
    for name, (status, body) in BODIES.items():
        content_type = "text/html" if body.startswith(b"<html") else "application/json"
        add(f"body {name} ({status}), then answers", once_then_ok(
            lambda s=status, b=body, t=content_type: Reply(status=s, body=b, headers={"Content-Type": t})))
        add(f"body {name} ({status}), always", always(
            lambda s=status, b=body, t=content_type: Reply(status=s, body=b, headers={"Content-Type": t})))
    add("a valid answer sent as text/plain", always(lambda: Reply(content=OK, headers={"Content-Type": "text/plain"})))
    add("an answer of 1 MB", always(lambda: '{"sentiment": "negative", "why": "' + "x" * 1_000_000 + '"}'))
    add("answer JSON with a lone surrogate escape", always(lambda: Reply(body=LONE_SURROGATE_BODY)))
    for name, content in {"NUL in the answer": OK + "\x00", "lone surrogate answer": "\ud800",
                          "JSON holding a lone surrogate": '{"sentiment": "\ud800"}',
                          "5000-digit number": '{"sentiment": ' + "1" * 5000 + "}",
                          "JSON nested 100k deep": "{" + '"a":[' * 100000, "NaN value": '{"sentiment": NaN}',
                          "empty answer": "", "punctuation only": "???",
                          "outside the label set": '{"sentiment": "ecstatic"}'}.items():
        add(f"answer: {name}", always(lambda c=content: c))
    for status in (400, 401, 403, 404, 408, 413, 422, 429, 500, 502, 503):
        add(f"HTTP {status}, always", always(lambda s=status: Reply(
            status=s, headers={"Retry-After": "0"} if s == 429 else {})))
    for status in (408, 429, 500, 502, 503):
        add(f"HTTP {status}, then answers", once_then_ok(lambda s=status: Reply(status=s)))
    add("dropped connection, always", always(lambda: Reply(drop=True)))
    add("dropped connection, then answers", once_then_ok(lambda: Reply(drop=True)))
    add("slower than the timeout, then answers", once_then_ok(lambda: Reply(content=OK, delay=2.5)), timeout=1)
    add("key revoked mid-run: 401 after 2 answers", after_answers(2, Reply(status=401)), items=5, concurrency=1)
    add("key revoked mid-run: 403 after 2 answers", after_answers(2, Reply(status=403)), items=5, concurrency=1)
    add("model withdrawn mid-run: 404 after 2 answers", after_answers(2, Reply(status=404)), items=5, concurrency=1)
    add("quota gone mid-run: insufficient_quota after 2", after_answers(
        2, error_object("insufficient_quota", "You exceeded your current quota")), items=5, concurrency=1)
    add("every fault at once (26 items)", chaos, items=2 * len(CHAOS), max_retries=3)
    return cases


def servers(runner: Runner) -> list[concurrent.futures.Future[Case]]:
    futures = []
    root = runner.root / "servers"
    root.mkdir()
    table = root / "items.csv"
    pd.DataFrame(sentences(4)).to_csv(table, index=False)
    big = root / "items26.csv"
    pd.DataFrame(sentences(2 * len(CHAOS))).to_csv(big, index=False)
    for name, make, extra in [("every fault at once (26 items)", chaos, ("--max-retries", "3")),
                              ("body HTML login page (200), always",
                               always(lambda: Reply(body=b"<html>login</html>", headers={"Content-Type": "text/html"})),
                               ()),
                              ("an answer of 1 MB",
                               always(lambda: '{"sentiment": "negative", "why": "' + "x" * 1_000_000 + '"}'), ()),
                              ("dropped connection, then answers", once_then_ok(lambda: Reply(drop=True)), ()),
                              ("key revoked mid-run: 401 after 2 answers", after_answers(2, Reply(status=401)),
                               ("--concurrency", "1"))]:
        data = big if "26" in name else table
        futures.append(runner.cli("server", name, lambda url, out, cache, d=data, e=extra: [
            *cli_annotate(d, "--id-column", "id")(url, out, cache), *e], responder=make(),
            n_items=2 * len(CHAOS) if "26" in name else 4))
    for name, make, options in server_cases():
        items = options.pop("items", 2)
        samples = options.pop("samples", 1)
        timeout = options.pop("timeout", None)
        spec = {"model": "openai/fake", "max_retries": 1, **options}

        def run(out: Path, cache: Path, items: int = items, samples: int = samples, spec: dict = spec,
                timeout: float | None = timeout) -> Any:
            return annotate(sentences(items), "sentiment", [spec], api_base=runner_url(), samples=samples,
                            id_column="id", out=out, cache=cache, progress=False, timeout=timeout)
        runner.library("server", name, run, responder=make(), n_items=items)
    return futures


# -- 3. exit codes --------------------------------------------------------------------------------

def fresh(responder: Any) -> Callable[[dict], Any] | None:
    """A responder, made anew when given as a factory (a responder with state: ``after_answers``)."""
    if responder is not None and getattr(responder, "__name__", "") == "make":
        return responder()
    return responder


def exit_scenarios(runner: Runner) -> tuple[list[concurrent.futures.Future[Case]], dict[str, Any]]:
    """Failure scenarios through the CLI (exit codes) and the library (does Python say it?)."""
    root = runner.root / "exits"
    root.mkdir()
    table = root / "items.csv"
    pd.DataFrame(sentences(6)).to_csv(table, index=False)
    not_found = error_object("model_not_found", "The model `fake` does not exist")
    scenarios: list[tuple[str, Any, tuple[str, ...], dict[str, Any], str]] = [
        # name, responder or a factory of one (None: no server), extra CLI arguments, library options,
        # the status docs/votes.md documents ("refused": exit 2 before any call)
        ("every request fails with 500", lambda r: Reply(status=500), (), {}, "failed"),
        ("every answer outside the label set", lambda r: '{"sentiment": "ecstatic"}', (), {}, "failed"),
        ("every answer empty", lambda r: "", (), {}, "failed"),
        ("unknown model: 404 model_not_found", lambda r: Reply(status=404, body=not_found.body), (), {}, "failed"),
        ("every request 400 bad request", lambda r: Reply(status=400), (), {}, "failed"),
        ("every connection dropped", lambda r: Reply(drop=True), (), {}, "failed"),
        ("every request 429, Retry-After one day", lambda r: Reply(status=429, headers={"Retry-After": "86400"}),
         (), {}, "failed"),
        ("every request 401 (key refused)", lambda r: Reply(status=401), (), {}, "failed"),
        ("key revoked mid-run: 401 after 2 answers", after_answers(2, Reply(status=401)),
         ("--concurrency", "1"), {"concurrency": 1}, "failed"),
        ("server down (nothing listens)", None, (), {}, "refused"),
        ("some items fail with 500", lambda r: Reply(status=500) if number(r) % 2 else OK, (), {}, "partial"),
        ("budget too small", lambda r: OK, ("--price", "1000,1000", "--budget-usd", "0.0001"),
         {"price": (1000, 1000), "budget_usd": 0.0001}, "stopped_by_budget"),
        ("every request fails with 500 (--stream)", lambda r: Reply(status=500), ("--stream",), {"stream": True},
         "failed"),
        ("some items fail with 500 (--stream)", lambda r: Reply(status=500) if number(r) % 2 else OK,
         ("--stream",), {"stream": True}, "partial"),
        ("everything answers (control)", lambda r: OK, (), {}, "complete"),
    ]
    futures = []
    for name, responder, extra, _, _ in scenarios:
        futures.append(runner.cli("exit", name, lambda url, out, cache, e=extra: [
            *cli_annotate(table, "--id-column", "id")(url, out, cache), *e],
            responder=fresh(responder), down=responder is None, n_items=6))
    futures.append(runner.cli("exit", "embedded model without llama-cpp-python", lambda url, out, cache: [
        "annotate", table, "-t", "sentiment", "--id-column", "id", "--out", out, "--cache-dir", cache, "-q"],
        python=["-c", NO_LLAMA], down=True))
    expected_of = {name: expected for name, _, _, _, expected in scenarios}
    expected_of["embedded model without llama-cpp-python"] = "refused"

    # the same scenarios in Python: a failed or partial run must raise or warn
    silent = []
    python_cases = []
    for name, responder, _, options, _ in scenarios:
        options = dict(options)
        stream = options.pop("stream", False)
        spec = {"model": "openai/fake", "max_retries": 1}
        for key in ("concurrency", "price"):
            if key in options:
                spec[key] = options.pop(key)
        base = f"http://127.0.0.1:{free_port()}/v1" if responder is None else None

        def run(out: Path, cache: Path, spec: dict = spec, options: dict = options, stream: bool = stream,
                base: str | None = base) -> Any:
            call = annotate_stream if stream else annotate
            return call(table, "sentiment", [spec], api_base=base or runner_url(), id_column="id", out=out,
                        cache=cache, progress=False, **options)
        case = runner.library("exit", name, run, responder=fresh(responder) or (lambda r: OK), n_items=6)
        python_cases.append(case)
        if case.status in ("failed", "partial") and case.outcome.startswith("went through") \
                and "RunWarning" not in case.detail:
            silent.append(name)
    saved = sys.modules.get("llama_cpp", "absent")
    sys.modules["llama_cpp"] = None  # type: ignore[assignment]
    try:
        case = runner.library("exit", "embedded model without llama-cpp-python", lambda out, cache: annotate(
            table, "sentiment", None, id_column="id", out=out, cache=cache, progress=False))
    finally:
        if saved == "absent":
            sys.modules.pop("llama_cpp", None)
        else:
            sys.modules["llama_cpp"] = saved  # type: ignore[assignment]
    python_cases.append(case)
    return futures, {"expected": expected_of, "python_silent_failures": silent}


def exit_figures(cases: list[Case], expected: dict[str, str]) -> dict[str, Any]:
    rows = []
    for case in cases:
        want = expected[case.name]
        want_code = 2 if want == "refused" else EXIT_CODES[want]
        if case.exit_code in (0, 3, 4, 5):
            agrees = case.status is not None and EXIT_CODES.get(case.status) == case.exit_code
        else:  # an error before any call: no run.json says otherwise
            agrees = case.status is None
        rows.append({"scenario": case.name, "exit_code": case.exit_code, "run_json_status": case.status,
                     "documented": f"{want} (exit {want_code})", "exit_code_agrees_with_run_json": agrees,
                     "as_documented": case.exit_code == want_code and (case.status == want or want == "refused"),
                     "calls": case.calls, "paid": case.paid, "last_stderr_line": case.detail})
    failures = [r for r in rows if r["documented"] != "complete (exit 0)"]
    return {"cli_runs": len(rows), "failure_scenarios": len(failures),
            "failure_scenarios_exiting_0": sum(r["exit_code"] == 0 for r in failures),
            "exit_codes": dict(collections.Counter(str(r["exit_code"]) for r in rows)),
            "exit_code_disagrees_with_run_json": sum(not r["exit_code_agrees_with_run_json"] for r in rows),
            "not_as_documented": sum(not r["as_documented"] for r in rows), "runs": rows}


# -- 4. credentials -------------------------------------------------------------------------------

#: Each item repeats the request back its own way (URL, headers, Authorization, the answer).
echo_back = echoing_responder(OK, CANARY, number)


CHILD = r"""
import json, os, sys, traceback, warnings
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
from llm_annotator import annotate
spec = json.loads(sys.argv[1])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        result = annotate(spec["data"], "sentiment", spec["models"], progress=False, **spec["options"])
        print("CHANNEL votes " + result.votes.to_json())
        print("CHANNEL manifest " + json.dumps(result.manifest, default=str))
        print("CHANNEL repr " + repr(result))
    except Exception as exc:
        print("CHANNEL exception " + type(exc).__name__ + ": " + str(exc) + " | " + repr(exc))
        print("CHANNEL traceback " + traceback.format_exc().replace("\n", " | "))
for w in caught:
    print("CHANNEL warning " + str(w.message).replace("\n", " | "))
"""


@dataclass
class LeakScenario:
    name: str
    via: str
    sent: bool = False  # the canary reached the server (so the test means something)
    channels: int = 0
    leaks: list[str] | None = None
    exit_codes: list[int] | None = None


def forms_in(data: bytes) -> list[str]:
    return [name for name, form in CANARY_FORMS.items() if form.encode() in data]


def check_tree(scenario: LeakScenario, *roots: Path) -> None:
    for root in roots:
        for path in sorted(root.rglob("*")) if root.exists() else []:
            if path.is_file():
                scenario.channels += 1
                for form in forms_in(path.read_bytes()):
                    scenario.leaks.append(f"{path.relative_to(root.parent)}: {form}")  # type: ignore[union-attr]


def check_text(scenario: LeakScenario, channel: str, text: str) -> None:
    scenario.channels += 1
    for form in forms_in(text.encode("utf-8", "backslashreplace")):
        scenario.leaks.append(f"{channel}: {form}")  # type: ignore[union-attr]


def check_process(scenario: LeakScenario, label: str, proc: subprocess.CompletedProcess[str]) -> None:
    scenario.exit_codes.append(proc.returncode)  # type: ignore[union-attr]
    channels = collections.defaultdict(list)
    for line in proc.stdout.splitlines():
        if line.startswith("CHANNEL "):
            kind, _, text = line[8:].partition(" ")
            channels[kind].append(text)
    for kind, texts in channels.items():
        check_text(scenario, f"{label} {kind}", "\n".join(texts))
    check_text(scenario, f"{label} stdout", proc.stdout)
    check_text(scenario, f"{label} stderr", proc.stderr)


def saw_canary(server: Server) -> bool:
    seen = json.dumps(server.fake.headers_seen) + json.dumps(server.fake.paths_seen)
    return any(form in seen for form in (CANARY, CANARY_FORMS["base64 of user:key"], CANARY_FORMS["percent-encoded"]))


def leak_scenarios(root: Path) -> list[LeakScenario]:
    """Each scenario: a server, a run dir, a cache dir, one or more processes; every channel grepped."""
    root = root / "leaks"
    root.mkdir()
    table = root / "items.csv"
    pd.DataFrame(sentences(14)).to_csv(table, index=False)
    rows = sentences(14)

    def library(server: Server, work: Path, models: list[dict], options: dict) -> subprocess.CompletedProcess[str]:
        spec = {"data": rows, "models": models,
                "options": {"id_column": "id", "out": str(work / "run"), "cache": str(work / "cache"), **options}}
        return cli([json.dumps(spec)], python=["-c", CHILD], env={"LLM_ANNOTATOR_CACHE_DIR": str(work / "cache")})

    def annotate_cli(work: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return cli(["annotate", table, "-t", "sentiment", "--id-column", "id", "--out", work / "run",
                    "--max-retries", "1", "-q", *args],
                   env={"LLM_ANNOTATOR_CACHE_DIR": str(work / "cache"), **(env or {})})

    def config(work: Path, base: str, key: str) -> Path:
        path = work / "router.yaml"
        path.write_text(f"model_list:\n- model_name: fake\n  litellm_params:\n    model: openai/fake\n"
                        f"    api_base: {base}\n    api_key: {key}\n")
        return path

    def with_user(url: str) -> str:
        return url.replace("http://", f"http://user:{CANARY}@")

    runs: list[tuple[str, str, Callable[[Server, Path], list[tuple[str, subprocess.CompletedProcess[str]]]],
                     Callable[[dict], Any]]] = [
        ("api_key= argument, echoing server", "library", lambda s, w: [("annotate", library(
            s, w, [{"model": "openai/fake", "max_retries": 1}], {"api_base": s.url, "api_key": CANARY}))], echo_back),
        ("api_key= argument, 401 that echoes", "library", lambda s, w: [("annotate", library(
            s, w, [{"model": "openai/fake"}], {"api_base": s.url, "api_key": CANARY}))],
         lambda r: Reply(status=401, echo=True)),
        ("api_key in the model spec, every request 500 echoing", "library", lambda s, w: [("annotate", library(
            s, w, [{"model": "openai/fake", "max_retries": 1, "api_key": CANARY}], {"api_base": s.url}))],
         lambda r: Reply(status=500, echo=True)),
        ("api base with ?api-key=, echoing server", "library", lambda s, w: [("annotate", library(
            s, w, [{"model": "openai/fake", "max_retries": 1}], {"api_base": f"{s.url}?api-key={CANARY}"}))],
         echo_back),
        ("api base with user:key@, echoing server", "library", lambda s, w: [("annotate", library(
            s, w, [{"model": "openai/fake", "max_retries": 1}], {"api_base": with_user(s.url)}))], echo_back),
        ("OPENAI_API_KEY, echoing server, then report", "cli", lambda s, w: [
            ("annotate", annotate_cli(w, "-m", "openai/fake", "--api-base", s.url, env={"OPENAI_API_KEY": CANARY})),
            ("report", cli(["report", w / "run"], env={"OPENAI_API_KEY": CANARY})),
            ("cache stats", cli(["cache", "stats", "--cache-dir", w / "cache"], env={"OPENAI_API_KEY": CANARY}))],
         echo_back),
        ("OPENAI_API_KEY, every request 500 echoing", "cli", lambda s, w: [("annotate", annotate_cli(
            w, "-m", "openai/fake", "--api-base", s.url, env={"OPENAI_API_KEY": CANARY}))],
         lambda r: Reply(status=500, echo=True)),
        ("OPENAI_API_KEY, 401 that echoes", "cli", lambda s, w: [("annotate", annotate_cli(
            w, "-m", "openai/fake", "--api-base", s.url, env={"OPENAI_API_KEY": CANARY}))],
         lambda r: Reply(status=401, echo=True)),
        ("--api-base with ?api-key=", "cli", lambda s, w: [("annotate", annotate_cli(
            w, "-m", "openai/fake", "--api-base", f"{s.url}?api-key={CANARY}"))], echo_back),
        ("--api-base with user:key@", "cli", lambda s, w: [("annotate", annotate_cli(
            w, "-m", "openai/fake", "--api-base", with_user(s.url)))], echo_back),
        ("router config, api_key: os.environ/NAME", "cli", lambda s, w: [("annotate", annotate_cli(
            w, "--router", config(w, s.url, "os.environ/MY_PROXY_CRED"), "-m", "fake",
            env={"MY_PROXY_CRED": CANARY}))], echo_back),
        ("router config, api_base: os.environ/NAME holding user:key@", "cli", lambda s, w: [("annotate", annotate_cli(
            w, "--router", config(w, "os.environ/MY_PROXY_BASE", "os.environ/MY_PROXY_CRED"), "-m", "fake",
            env={"MY_PROXY_BASE": with_user(s.url), "MY_PROXY_CRED": CANARY + "-router"}))], echo_back),
        ("--batch with OPENAI_API_KEY, answers repeating the key, then collect", "cli", lambda s, w: [
            ("annotate --batch", annotate_cli(w, "-m", "openai/fake", "--api-base", s.url, "--batch",
                                             env={"OPENAI_API_KEY": CANARY})),
            ("batch collect", cli(["batch", "collect", w / "run", "--wait", "--poll", "0.2", "-q"],
                                  env={"OPENAI_API_KEY": CANARY, "LLM_ANNOTATOR_CACHE_DIR": str(w / "cache")}))],
         lambda r: f'{{"sentiment": "positive", "note": "you sent {CANARY}"}}' if number(r) % 2 else OK),
    ]

    def one(name: str, via: str, go: Callable[[Server, Path], list[tuple[str, subprocess.CompletedProcess[str]]]],
            responder: Callable[[dict], Any]) -> LeakScenario:
        scenario = LeakScenario(name, via, leaks=[], exit_codes=[])
        work = Path(tempfile.mkdtemp(dir=root))
        server = Server(responder)
        try:
            for label, proc in go(server, work):
                check_process(scenario, label, proc)
            scenario.sent = saw_canary(server)
            check_tree(scenario, work / "run", work / "cache")
        finally:
            server.stop()
        print(f"  leaks    {via:7s} {name[:52]:52s} {len(scenario.leaks)} leak(s) in {scenario.channels} channels"
              f"{'' if scenario.sent else ' (canary NOT sent)'}; exit {scenario.exit_codes}"
              f"{'  <--' if scenario.leaks else ''}", flush=True)
        return scenario

    with concurrent.futures.ThreadPoolExecutor(max_workers=JOBS["n"]) as pool:
        return list(pool.map(lambda run: one(*run), runs))


JOBS = {"n": 2}


# -- main -----------------------------------------------------------------------------------------

def input_kind(name: str) -> str:
    if name.startswith("dtype "):
        return "column types"
    if name.startswith("unicode "):
        return "Unicode and encodings"
    if name.startswith(("column ", "dict key", "keys ", "DataFrame with", "CSV header", "JSONL key")):
        return "column names"
    return "malformed rows and lines"


def tally(cases: list[Case]) -> dict[str, Any]:
    outcomes = collections.Counter(case.outcome for case in cases)
    by_via = {via: dict(collections.Counter(c.outcome for c in cases if c.via == via))
              for via in sorted({c.via for c in cases})}
    return {"kinds_tried": len(cases), "outcomes": dict(outcomes), "by_path": by_via,
            "crashed_after_a_paid_answer": outcomes["crash after a paid answer"],
            "crashed_before_a_paid_answer": outcomes["crash before a paid answer"],
            "refused_before_any_call_in_one_line": outcomes["refused before any call, in one line"],
            "went_through": outcomes["went through"],
            "outputs_damaged": outcomes["went through, outputs damaged"]}


def head_commit() -> str | None:
    """The commit measured, with ``+modified`` when the library's tracked files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                              timeout=10).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "llm_annotator"],
                                 capture_output=True, text=True, cwd=ROOT, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+modified" if changed else "")) or None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="CLI subprocesses at once (default 2)")
    args = parser.parse_args()
    JOBS["n"] = args.jobs
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="honesty-"))
    os.environ["LLM_ANNOTATOR_CACHE_DIR"] = str(root / "default-cache")  # no run touches the user's cache
    os.environ["XDG_CACHE_HOME"] = str(root / "xdg-cache")
    runner = Runner(root, args.jobs)
    _URL["url"] = runner.server.url
    section_s: dict[str, float] = {}

    def lap(name: str) -> None:
        section_s[name] = round(time.perf_counter() - started - sum(section_s.values()), 1)
    try:
        print("1. inputs", flush=True)
        futures = inputs(runner)
        concurrent.futures.wait(futures)
        input_cases = [c for c in runner.cases if c.section == "input"]
        lap("inputs")
        print("2. servers", flush=True)
        futures = servers(runner)
        concurrent.futures.wait(futures)
        server_cases_ = [c for c in runner.cases if c.section == "server"]
        lap("servers")
        print("3. exit codes", flush=True)
        futures, exits = exit_scenarios(runner)
        concurrent.futures.wait(futures)
        exit_cli = [f.result() for f in futures]
        exit_python = [c for c in runner.cases if c.section == "exit" and c.via == "library"]
        lap("exit codes")
        print("4. credentials", flush=True)
        leak_runs = leak_scenarios(root)
        lap("credentials")
    finally:
        runner.pool.shutdown(wait=True)
        runner.server.stop()
        shutil.rmtree(root, ignore_errors=True)

    wall = time.perf_counter() - started
    inputs_fig = tally(input_cases)
    inputs_fig["by_kind"] = {kind: dict(collections.Counter(c.outcome for c in input_cases
                                                          if input_kind(c.name) == kind))
                             for kind in sorted({input_kind(c.name) for c in input_cases})}
    inputs_fig["expected_refusals_accepted"] = inputs_fig["outcomes"].get(
        "went through, though a refusal was expected", 0)
    servers_fig = tally(server_cases_)
    servers_fig["statuses"] = dict(collections.Counter(str(c.status) for c in server_cases_))
    exit_fig = exit_figures(exit_cli, exits["expected"])
    exit_fig["python"] = {
        "runs": len(exit_python),
        "failed_or_partial_without_exception_or_RunWarning": exits["python_silent_failures"],
        "runs_detail": [{"scenario": c.name, "outcome": c.outcome, "status": c.status, "calls": c.calls,
                         "paid": c.paid, "detail": c.detail} for c in exit_python]}
    leak_fig = {"scenarios": len(leak_runs), "channels_checked": sum(s.channels for s in leak_runs),
                "leaks": sum(len(s.leaks or []) for s in leak_runs),
                "canary_reached_the_server": sum(s.sent for s in leak_runs),
                "forms": list(CANARY_FORMS),
                "note": "an API base with user:key@ never reaches the server: the HTTP client refuses to send "
                        "credentials in the URL beside an Authorization header (a bad_request vote), so only "
                        "this side's files and terminal can hold the key there",
                "runs": [asdict(s) for s in leak_runs]}
    expected_zero = {
        "inputs: crashes after a paid answer": inputs_fig["crashed_after_a_paid_answer"],
        "inputs: crashes before a paid answer": inputs_fig["crashed_before_a_paid_answer"],
        "inputs: outputs damaged": inputs_fig["outputs_damaged"],
        "servers: crashes after a paid answer": servers_fig["crashed_after_a_paid_answer"],
        "servers: crashes before a paid answer": servers_fig["crashed_before_a_paid_answer"],
        "servers: outputs damaged": servers_fig["outputs_damaged"],
        "exit codes: failure scenarios that exited 0": exit_fig["failure_scenarios_exiting_0"],
        "exit codes: exit code disagreeing with run.json": exit_fig["exit_code_disagrees_with_run_json"],
        "python: failed/partial runs that said nothing": len(exits["python_silent_failures"]),
        "credentials: leaks": leak_fig["leaks"],
    }
    notable = [asdict(c) for c in runner.cases
               if c.outcome not in ("went through", "refused before any call, in one line")]
    report = {
        "command": "python benchmarks/honesty.py", "date": dt.date.today().isoformat(), "commit": head_commit(),
        "wall_s": round(wall, 1),
        "section_wall_s": section_s, "cpu_count": os.cpu_count(), "expected_zero": expected_zero,
        "inputs": inputs_fig, "servers": servers_fig, "exit_codes": exit_fig, "credentials": leak_fig,
        "notable_cases": notable,
        "cases": [{k: v for k, v in asdict(c).items() if k != "detail" or c.outcome != "went through"}
                  for c in runner.cases],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    print(f"\n{'figure':55s} value")
    print(f"{'inputs: kinds tried':55s} {inputs_fig['kinds_tried']}  {inputs_fig['by_path']}")
    for key in ("went_through", "refused_before_any_call_in_one_line", "crashed_after_a_paid_answer",
                "expected_refusals_accepted"):
        print(f"{'  ' + key:55s} {inputs_fig[key]}")
    print(f"{'servers: kinds tried':55s} {servers_fig['kinds_tried']}  statuses {servers_fig['statuses']}")
    print(f"{'  outcomes':55s} {servers_fig['outcomes']}")
    print(f"{'exit codes: CLI runs':55s} {exit_fig['cli_runs']}  {exit_fig['exit_codes']}")
    print(f"{'  not as documented (docs/votes.md)':55s} {exit_fig['not_as_documented']}")
    print(f"{'credentials: channels checked':55s} {leak_fig['channels_checked']} "
          f"in {leak_fig['scenarios']} scenarios (canary sent in {leak_fig['canary_reached_the_server']})")
    for key, value in expected_zero.items():
        print(f"{key:55s} {value}{'' if value == 0 else '   <-- expected 0'}")
    for case in notable:
        print(f"  note: {case['section']}/{case['via']} {case['name']}: {case['outcome']} "
              f"(status {case['status']}, exit {case['exit_code']}, calls {case['calls']}, paid {case['paid']}) "
              f"{case['detail'][:160]}")
    print(f"wall time {wall:.0f} s; wrote {RESULTS.relative_to(ROOT)}")
    return 1 if any(expected_zero.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
