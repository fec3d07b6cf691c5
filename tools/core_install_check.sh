#!/usr/bin/env bash
# The core install works on its own: a fresh virtual environment, the package with no
# extras (pip install -c constraints.txt .), then annotate -> agree -> report through the
# installed llm-annotator against the loopback OpenAI-compatible server. Each step must
# exit 0 and write its file. `make test` cannot see this: it installs every extra, so a
# module that only an extra provides (a missing core dependency) passes there.
#
#   tools/core_install_check.sh            # PYTHON=python3.12 to choose the interpreter
#
# Needs PyPI (or pip's cache) for the dependencies; writes only to a temporary directory.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
start=$SECONDS

# What a wheel is built from, copied so that the build writes nothing into the checkout.
mkdir "$WORK/src"
cp -r "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/llm_annotator" "$ROOT/prompt_templates" "$WORK/src/"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +

"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -c "$ROOT/constraints.txt" "$WORK/src"
echo "core install: installed in $((SECONDS - start)) s"

head -n 9 "$ROOT/examples/data/walnut_street.csv" > "$WORK/dialogues.csv"
cd "$WORK"  # not the checkout: the installed package is the one imported
env -u PYTHONPATH -u OPENAI_API_KEY -u OPENAI_API_BASE -u OPENAI_BASE_URL \
  LITELLM_LOCAL_MODEL_COST_MAP=True LLM_ANNOTATOR_CACHE_DIR="$WORK/cache" \
  "$WORK/venv/bin/python" - "$WORK" <<'EOF'
import subprocess
import sys
import time
from pathlib import Path

import llm_annotator
from llm_annotator.testing import FakeOpenAI, sampling_responder

work = Path(sys.argv[1])
assert Path(llm_annotator.__file__).is_relative_to(work / "venv"), f"not the installed copy: {llm_annotator.__file__}"
cli = str(Path(sys.executable).parent / "llm-annotator")
emotions = ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]
failed = []
with FakeOpenAI(sampling_responder(emotions, "elements.emotion")) as server:
    steps = [
        (["annotate", "dialogues.csv", "-t", "emotion_melt", "--id-column", "Sr No.", "-m", "openai/fake",
          "--api-base", server.url, "-k", "3", "--out", "runs/core", "-q"], "runs/core/labels.csv"),
        (["agree", "runs/core", "--gold", "Emotion", "--columns", "Emotion"], "runs/core/agreement.json"),
        (["report", "runs/core", "--gold", "Emotion"], "runs/core/report.html"),
    ]
    for argv, product in steps:
        begun = time.monotonic()
        done = subprocess.run([cli, *argv], capture_output=True, text=True, timeout=300)
        took = time.monotonic() - begun
        wrote = (work / product).is_file()
        print(f"core install: llm-annotator {argv[0]}: exit {done.returncode}, "
              f"{product} {'written' if wrote else 'MISSING'}, {took:.1f} s")
        if done.returncode != 0 or not wrote:
            print((done.stdout + done.stderr).strip()[-3000:], file=sys.stderr)
            failed.append(argv[0])
if failed:
    sys.exit(f"core install check failed: {', '.join(failed)} (installed with no extras: a module the core "
             "needs is missing from [project] dependencies in pyproject.toml, or the command fails)")
EOF
echo "core install check passed in $((SECONDS - start)) s"
