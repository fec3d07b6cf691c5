"""Every shell command of README.md and docs/*.md runs as written, or says why not.

The commands are the lines of the ```bash, ```sh, ```shell and ```console blocks (a
console block's ``$ `` lines; ``\\`` continuations joined). Each one is run here, or run
over the reference data (``OVER_REFERENCE_DATA``, which must print the figures the docs
quote), or listed in ``NOT_RUN`` with the reason. A new command in the docs is run like
the others: it passes or is explained, never skipped in silence.

The commands of one page run in order, in one temporary directory, so a page's later
commands see what its earlier ones wrote (README: annotate, then agree and report on the
run). Nothing is written into the repository. They run with

- the repository's own code: ``llm-annotator`` lines through ``llm_annotator.cli.main``
  (what the script calls) in this process, other lines in bash with ``PYTHONPATH``;
- an answer cache of their own;
- the loopback server (``FakeOpenAI``) as OpenAI: ``OPENAI_API_BASE`` and a dummy key
  reach it, so ``-m gpt-4o`` and ``openai/...`` commands run without a key or network,
  and the address ``http://127.0.0.1:8080/v1`` the docs give for "your own server" is
  replaced by the loopback server's;
- the repository's example data (``examples/data``, cut to its first rows so that the
  embedded model has little to do) and, for the files the docs name as the reader's own
  (``dialogues.csv``, ``labels.csv``, ``router.yaml``, …), small stand-ins written here.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llm_annotator.testing import FakeOpenAI, user_text

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = {"bash", "sh", "shell", "console"}
OWN_SERVER = "http://127.0.0.1:8080/v1"  # the docs' example address of the reader's own server
EXAMPLE_ROWS = 4  # rows of examples/data/walnut_street.csv the commands get

SHARED = "reads ../shared/data, which is outside the repository (docs/data.md); the tests over it run it"
NOT_RUN: dict[str, str] = {
    "python -m examples.ser.train --run runs/melt_train_emotion_melt --output loudness --file-template {clip}.wav "
    "--audio-dir MELD_WAV --backbone microsoft/wavlm-base-plus --mode probe --epochs 100 --out runs/ser_loudness":
        "needs a MELT run, MELD's audio and a backbone from the Hugging Face hub; tests/test_ser_outputs.py trains "
        "on a run's outputs",
    "llm-annotator annotate ../shared/data/meld/train_sent_emo.csv -t dimensions -m gpt-4o -k 5 "
    "--out runs/meld_dimensions":
        f"about 10,000 paid calls, and it {SHARED}",
    "python -m examples.ser.train --run runs/meld_dimensions --output arousal --file-template "
    "dia{Dialogue_ID}_utt{Utterance_ID}.wav --audio-dir MELD_WAV --backbone microsoft/wavlm-base-plus --mode probe "
    "--epochs 100 --out runs/ser_arousal":
        "needs the run above, MELD's audio and a backbone from the Hugging Face hub; tests/test_ser_outputs.py "
        "trains on a numeric output",
    # README.md
    "sudo apt-get install -y python3-venv build-essential cmake make git chromium":
        "installs system packages as root; .ci/run installs Chromium the same way",
    "sudo apt-get install -y python3-venv build-essential cmake make git && sudo snap install chromium":
        "installs system packages as root (Ubuntu)",
    "python3 -m venv .venv && . .venv/bin/activate":
        "makes a virtual environment in the clone; tools/core_install_check.sh makes one the same way in CI",
    "make demo": "installs the package (pip); its annotate command is the next one, run here",
    "make test": "is the whole check, this test among it; CI runs it (.ci/run)",
    "python -m examples.melt.run_melt --split dev":
        "needs MELD's CSVs (docs/melt.md: where to get them) and ~10 minutes of the embedded model; "
        "tests/test_examples.py runs it on a few rows",
    "python -m examples.ser.baseline --table ../shared/data/emodb/labels.csv --audio-dir ../shared/data/emodb "
    "--label-column emotion --speaker-column speaker --features egemaps --out runs/emodb_baseline": SHARED,
    "python -m examples.ser.train --table T --audio-dir D --soft-label-column p_* --backbone "
    "facebook/wav2vec2-base --mode probe --epochs 100 --out runs/ser":
        "T and D stand for the reader's table and audio; the backbone comes from the Hugging Face hub",
    # docs/agreement.md, docs/melt.md
    "python -m pytest tests/test_meld.py -k reproduces": f"a test of the suite that {SHARED}",
    "python -m examples.melt.run_melt --split dev --plan --limit 1": "needs MELD's CSVs (docs/melt.md)",
    "python -m examples.melt.run_melt --split train --melt-filter -m gpt-4o -k 5 --batch":
        "needs MELD's CSVs and OpenAI's batch API (tests/test_examples.py runs the batch path on loopback)",
    "python -m examples.melt.run_melt --split dev -m local/smollm2-135m -m local/gemma3-270m --samples 5 "
    "--out runs/melt_dev_emotion_melt": "needs MELD's CSVs and about an hour of the embedded models",
    "python -m examples.melt.run_melt --split dev -m gpt-4o --audio-dir MELD_WAV/dev --samples 1":
        "needs MELD's audio (MELD.Raw, converted to WAV) and OpenAI (OPENAI_API_KEY); tests/test_melt_audio.py runs "
        "--audio-dir on EmoDB clips against the loopback server",
    "python -m examples.melt.run_melt --split dev -m gpt-4o --audio-dir MELD_WAV/dev --audio-model "
    "openai/Qwen/Qwen2-Audio-7B-Instruct --audio-api-base http://127.0.0.1:8000/v1":
        "needs MELD's audio and a self-hosted audio model; tests/test_melt_audio.py runs it against the loopback server",
    "python benchmarks/melt_audio_cost.py": f"a benchmark of several minutes, and it {SHARED}",
    # docs/scale.md
    "ray start --head": "starts a Ray head that outlives the command; tests/test_ray.py starts one and stops it",
    "llm-annotator annotate data.csv -t emotion_melt -m gpt-4o --samples 5 --workers 16 --ray auto "
    "--out /shared/runs/big": "needs the Ray head above and storage every node sees; tests/test_ray.py runs --ray "
                              "against a local head",
    # docs/reliability.md
    "python benchmarks/faults.py --items 2000 --kills 10": "a benchmark of several minutes (docs/reliability.md)",
    # docs/trust.md
    "llm-annotator review runs/friends --import project-1-at-2026-11-29.json":
        "the file stands for the reader's Label Studio export; tests/test_label_studio.py imports a real one",
    "llm-annotator trust runs/friends":
        "needs the answers of a person (review_label filled in); tests/test_trust.py runs it after an import",
    # docs/ser.md
    "python -m examples.ser.train --table TABLE.csv --audio-dir AUDIO --label-column emotion --speaker-column "
    "speaker --backbone facebook/wav2vec2-base --mode probe --epochs 100 --out runs/ser":
        "TABLE.csv and AUDIO stand for the reader's data; the backbone comes from the Hugging Face hub",
    "python -m examples.ser.train --table runs/melt_train_emotion_melt/soft_labels.csv --audio-dir MELD_WAV "
    "--soft-label-column p_* --backbone microsoft/wavlm-base-plus --mode finetune --epochs 10 --out runs/ser_ft":
        "needs MELD's audio (MELD.Raw) and a backbone from the Hugging Face hub",
    "python -m examples.ser.evaluate --checkpoint runs/ser/best.pt --table ../shared/data/emodb/labels.csv "
    "--audio-dir ../shared/data/emodb --label-column emotion --map happiness=joy":
        f"needs a trained checkpoint, and {SHARED}",
    "python -m examples.melt.run_melt --split train --melt-filter -m gpt-4o --samples 5":
        "needs MELD's CSVs and an hour of GPT-4o (OPENAI_API_KEY)",
    "python -m examples.ser.melt_experiment --table runs/melt_train_emotion_melt/soft_labels.csv --audio-dir "
    "MELD_WAV --backbone facebook/wav2vec2-base --mode finetune --epochs 100 --cross-table "
    "../shared/data/emodb/labels.csv --cross-audio-dir ../shared/data/emodb --cross-map happiness=joy "
    "--out runs/melt_ser": "needs MELD's audio, a GPU-sized training run and a backbone from the Hugging Face hub",
}

#: Commands over ../shared/data, run by test_docs_commands_over_the_reference_data (which
#: needs the data, as every test over it does), with what each must print: the figures
#: the docs quote beside it.
OVER_REFERENCE_DATA: dict[str, list[str]] = {
    "llm-annotator agree ../shared/data/melt/meld_train.csv --columns Emotion llm_label --gold Emotion": [
        "Krippendorff's alpha: 0.3878 [0.3731, 0.4022]", "percent agreement:    0.5357 [0.5238, 0.5476]",
        "llm_label                      7024  0.5357 [0.5238, 0.5476]   0.4399   0.4796   0.3919"],
}

#: Commands that are run and still fail, each with the issue that tracks it. The test
#: fails when one of them starts to pass: then take it off this list.
KNOWN_FAILURES: dict[str, str] = {}

#: Files a command must leave behind (relative to its working directory).
WRITES: dict[str, list[str]] = {
    "llm-annotator annotate examples/data/walnut_street.csv --task emotion_melt --id-column 'Sr No.' "
    "--out runs/walnut_street": ["runs/walnut_street/votes.jsonl", "runs/walnut_street/labels.csv",
                                 "runs/walnut_street/labels.jsonl", "runs/walnut_street/run.json"],
}


#: Text a command must print.
PRINTS: dict[str, str] = {
    "llm-annotator review runs/friends -n 200": "strategy random: a simple random sample",
    "llm-annotator review runs/friends --import runs/friends/review.csv --reviewer ana":
        "0 answers added, 0 changed, 0 already recorded",
    "llm-annotator templates show ./toxicity.jinja": "name: toxicity",
    "llm-annotator templates list": "emotion_melt",
    "llm-annotator plan comments.csv -t ./toxicity.jinja -m gpt-4o": "gpt-4o",
}


@dataclass(frozen=True)
class Command:
    page: Path
    line: int
    text: str  # as written (continuations joined), for the shell

    @property
    def key(self) -> str:
        """The command without comments and with single spaces: what the lists above hold."""
        return " ".join(shlex.quote(t) if " " in t else t for t in shlex.split(self.text, comments=True))

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}: {self.key}"


def commands(page: Path) -> list[Command]:
    """The shell commands of one page's fenced blocks, in order."""
    found: list[Command] = []
    language: str | None = None
    pending: tuple[int, str] | None = None
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        fence = re.match(r"\s*```\s*([\w-]*)", line)
        if fence:
            language = None if language is not None else (fence.group(1).lower() or "")
            continue
        if language not in LANGUAGES:
            continue
        if language == "console":
            if pending is None and not line.lstrip().startswith("$ "):
                continue  # output, not a command
            if pending is None:
                line = line.lstrip()[2:]
        if pending is not None:
            start, text = pending
            line, number = text + " " + line.strip(), start
            pending = None
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending = (number, stripped[:-1].rstrip())
            continue
        found.append(Command(page, number, stripped))
    return found


def all_commands() -> list[Command]:
    return [c for page in PAGES for c in commands(page)]


def pages_to_run() -> list[Path]:
    return [p for p in PAGES if any(c.key not in NOT_RUN and c.key not in OVER_REFERENCE_DATA for c in commands(p))]


# -- the reader's own files, stood in for ------------------------------------------------


def _example_rows(n: int = EXAMPLE_ROWS) -> str:
    lines = (ROOT / "examples" / "data" / "walnut_street.csv").read_text(encoding="utf-8").splitlines()
    return "\n".join(lines[: n + 1]) + "\n"


def _labels_table() -> str:
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(_example_rows(8))))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "Utterance", "Emotion", "llm_label"])
    for k, row in enumerate(rows):
        writer.writerow([row["Sr No."], row["Utterance"], row["Emotion"], row["Emotion"] if k % 3 else "neutral"])
    return out.getvalue()


def _corpus() -> str:
    return "id,text\n" + "".join(f"c{i},\"comment number {i}, about topic {i % 3}\"\n" for i in range(6))


def _router(url: str) -> str:
    return ("model_list:\n"
            f"  - model_name: annotator\n    litellm_params: {{model: openai/gpt-4o, api_base: '{url}', api_key: sk-a}}\n"
            f"  - model_name: annotator\n    litellm_params: {{model: openai/llama, api_base: '{url}', api_key: sk-b}}\n"
            "num_retries: 1\n")


def template_block(name: str = "toxicity", page: Path = ROOT / "docs" / "templates.md") -> str:
    """The template called ``name`` the templates page shows (a ```jinja block), as a reader copies it."""
    blocks = [b for b in re.findall(r"```jinja\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
              if f"\nname: {name}\n" in b]
    assert len(blocks) == 1, f"{page.name}: expected one ```jinja block of template {name}, found {len(blocks)}"
    return str(blocks[0])


def workspace(path: Path, url: str) -> Path:
    (path / "examples" / "data").mkdir(parents=True)
    (path / "examples" / "data" / "walnut_street.csv").write_text(_example_rows(), encoding="utf-8")
    for name in ("dialogues.csv", "meld.csv", "data.csv"):
        (path / name).write_text(_example_rows(), encoding="utf-8")
    (path / "labels.csv").write_text(_labels_table(), encoding="utf-8")
    (path / "corpus.csv").write_text(_corpus(), encoding="utf-8")
    (path / "comments.csv").write_text(_corpus(), encoding="utf-8")
    (path / "router.yaml").write_text(_router(url), encoding="utf-8")
    (path / "toxicity.jinja").write_text(template_block(), encoding="utf-8")
    return path


def schema_answer(request: dict[str, Any]) -> str:
    """A JSON answer that follows the request's schema; labels drawn from the prompt's hash."""
    seed = int(hashlib.sha256(user_text(request).encode()).hexdigest()[:8], 16)
    fmt = request.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") if isinstance(fmt, dict) else None

    def fill(node: dict[str, Any]) -> Any:
        if "enum" in node:
            return node["enum"][seed % len(node["enum"])]
        if node.get("type") == "object":
            return {name: fill(sub) for name, sub in node.get("properties", {}).items()}
        return "a few words"

    return json.dumps(fill(schema)) if schema else "neutral"


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(schema_answer) as running:
        yield running


def environment(cwd: Path, url: str) -> dict[str, str]:
    """The variables the commands see: this checkout's code, their own cache, the loopback server."""
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_API_KEY", "_API_BASE", "_BASE_URL")) and k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LLM_ANNOTATOR_CACHE_DIR": str(cwd / ".cache"),
        "OPENAI_API_BASE": url,
        "OPENAI_API_KEY": "sk-docs-commands",
    })
    return env


def run(text: str, cwd: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """Exit status and output of one command line.

    A plain ``[NAME=VALUE ...] llm-annotator ARGS`` line is run in this process, through
    the function the ``llm-annotator`` script calls, with the same arguments, variables
    and working directory (a new process per command would import LiteLLM each time);
    anything else goes to bash.
    """
    words = shlex.split(text, comments=True)
    assignments = {}
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        assignments[name] = value
    shell = any(c in w for w in words for c in ";&|<>$`")
    if not words or words[0] != "llm-annotator" or shell:
        done = subprocess.run(["bash", "-c", text], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        return done.returncode, done.stdout + done.stderr
    from llm_annotator.cli import main

    out = io.StringIO()
    with monkeypatch.context() as patch:
        for name in set(os.environ) - set(env):
            patch.delenv(name)
        for name, value in {**env, **assignments}.items():
            patch.setenv(name, value)
        patch.chdir(cwd)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                status = main(words[1:])
        except SystemExit as exit:  # argparse
            status = exit.code if isinstance(exit.code, int) else 2
        except Exception:  # what the script would die of, with its traceback
            status = 1
            out.write(traceback.format_exc())
    return status, out.getvalue()


# -- the tests ------------------------------------------------------------------------------


def test_every_command_in_the_docs_is_run_or_listed_with_a_reason():
    """A command is run (test_docs_commands_run) unless NOT_RUN says why; the lists hold no
    command the docs dropped, so a reason never outlives its command."""
    found = all_commands()
    keys = {c.key for c in found}
    assert len(found) >= 30, f"the docs' shell blocks were not found ({len(found)} commands)"
    run_pages = set(pages_to_run())
    assert all(c.page in run_pages for c in found if c.key not in NOT_RUN and c.key not in OVER_REFERENCE_DATA)
    stale = sorted({*NOT_RUN, *OVER_REFERENCE_DATA, *KNOWN_FAILURES, *WRITES, *PRINTS} - keys)
    assert not stale, f"listed here but no longer in the docs: {stale}"
    assert all(len(reason.split()) >= 3 for reason in [*NOT_RUN.values(), *KNOWN_FAILURES.values()])
    assert not set(NOT_RUN) & (set(KNOWN_FAILURES) | set(OVER_REFERENCE_DATA))


def test_commands_are_read_as_a_shell_reads_them(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("intro\n```bash\n# a comment\nllm-annotator plan a.csv \\\n    -m gpt-4o   # note\n\n"
                    "```\n```python\nprint('no')\n```\n```console\n$ llm-annotator cache stats\n"
                    "0 answers\n```\n```\nnot a shell block\n```\n", encoding="utf-8")
    found = commands(page)
    assert [(c.line, c.key) for c in found] == [(4, "llm-annotator plan a.csv -m gpt-4o"),
                                               (12, "llm-annotator cache stats")]
    assert found[0].text == "llm-annotator plan a.csv -m gpt-4o   # note"


@pytest.mark.parametrize("page", pages_to_run(), ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_commands_run(page: Path, tmp_path: Path, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch):
    cwd = workspace(tmp_path / "work", server.url)
    env = environment(cwd, server.url)
    before = sorted(p.name for p in ROOT.iterdir())
    failures = []
    for command in commands(page):
        if command.key in NOT_RUN or command.key in OVER_REFERENCE_DATA:
            continue
        status, output = run(command.text.replace(OWN_SERVER, server.url), cwd, env, monkeypatch)
        output = output.strip()[-2000:]
        if command.key in KNOWN_FAILURES:
            if status == 0:
                failures.append(f"{command} now passes: take it off KNOWN_FAILURES ({KNOWN_FAILURES[command.key]})")
            continue
        if status != 0:
            failures.append(f"{command}\n  exit {status}: {output}")
            continue
        missing = [name for name in WRITES.get(command.key, []) if not (cwd / name).is_file()]
        if missing:
            failures.append(f"{command}\n  did not write {missing}: {output}")
        if PRINTS.get(command.key, "") not in output:
            failures.append(f"{command}\n  did not print {PRINTS[command.key]!r}: {output}")
    assert not failures, "\n".join(failures)
    assert sorted(p.name for p in ROOT.iterdir()) == before, "a docs command wrote into the repository"


def test_docs_commands_over_the_reference_data(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The commands that read ../shared/data, from a directory that has it at ../shared/data."""
    (tmp_path / "shared").symlink_to(shared_data.parent, target_is_directory=True)
    cwd = tmp_path / "work"
    cwd.mkdir()
    found = [c for c in all_commands() if c.key in OVER_REFERENCE_DATA]
    assert {c.key for c in found} == set(OVER_REFERENCE_DATA)
    for command in found:
        status, output = run(command.text, cwd, environment(cwd, "http://127.0.0.1:9/v1"), monkeypatch)
        assert status == 0, f"{command}\n  exit {status}: {output[-2000:]}"
        missing = [text for text in OVER_REFERENCE_DATA[command.key] if text not in output]
        assert not missing, f"{command}\n  does not print {missing} as the docs say: {output[-2000:]}"
        page = command.page.read_text(encoding="utf-8")
        quoted = [i for text in OVER_REFERENCE_DATA[command.key] for i in re.findall(r"\[[\d.]+, [\d.]+\]", text)]
        assert quoted and all(i in page for i in quoted), f"{command.page.name} does not quote {quoted}"


def test_the_template_on_the_templates_page_is_valid_as_copied():
    from llm_annotator.core.task import parse_task_text

    task = parse_task_text(template_block(), "toxicity.jinja")
    assert task.labels == ("toxic", "fine") and task.output == "verdict"
    assert task.label_descriptions == {"toxic": "insults, threats or slurs", "fine": "anything else"}
    assert task.aliases == {"toxicity": "toxic", "ok": "fine"}


def test_the_template_with_outputs_on_the_templates_page_is_valid_as_copied():
    from llm_annotator.core.task import parse_task_text

    task = parse_task_text(template_block("delivery"), "delivery.jinja")
    assert [(s.name, s.kind) for s in task.output_specs] == [
        ("emotion", "categorical"), ("loudness", "ordinal"), ("arousal", "numeric"), ("valence", "numeric"),
        ("emotions", "multi_label")]
    assert task.output_spec("valence").categories == ("-1..-0.5", "-0.5..0", "0..0.5", "0.5..1")
    assert task.explanations == ("character", "reason") and task.output == "elements.emotion"


def test_melt_example_without_meld_names_the_option_and_where_the_csvs_come_from(tmp_path, capsys):
    from examples.melt.run_melt import main

    with pytest.raises(SystemExit) as stopped:
        main(["--split", "dev", "--meld-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])
    error = capsys.readouterr().err
    assert stopped.value.code == 2
    assert f"--meld-dir {tmp_path / 'nowhere'}: {tmp_path / 'nowhere' / 'dev_sent_emo.csv'} does not exist" in error
    for text in ("train_sent_emo.csv, dev_sent_emo.csv, test_sent_emo.csv",
                 "https://github.com/declare-lab/MELD (folder data/MELD)", "pass their folder as --meld-dir FOLDER"):
        assert text in error
    assert not (tmp_path / "run").exists()


def test_melt_plan_without_meld_train_names_the_option(tmp_path, capsys):
    """``--plan`` reads MELD train too: its absence is the same clear error, not a traceback."""
    from examples.melt.run_melt import main

    meld = tmp_path / "meld"
    meld.mkdir()
    (meld / "dev_sent_emo.csv").write_text(
        "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
        "1,Oh my God!,Rachel,surprise,positive,0,0,1,1,\"00:00:01,000\",\"00:00:02,500\"\n", encoding="utf-8")
    with pytest.raises(SystemExit) as stopped:
        main(["--split", "dev", "--plan", "--meld-dir", str(meld), "--melt-csv", str(tmp_path / "none.csv"),
              "--out", str(tmp_path / "run")])
    error = capsys.readouterr().err
    assert stopped.value.code == 2
    assert f"{meld / 'train_sent_emo.csv'} does not exist" in error and "--meld-dir FOLDER" in error
