"""The review round trip against a real Label Studio on 127.0.0.1 (issue 17).

``llm-annotator review RUN`` writes tasks; Label Studio imports them, two people label
them, the project's JSON export comes back with ``review --import``. Label Studio runs
from ``.label-studio/`` (``make label-studio``): see tests/label_studio.py.
"""

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from llm_annotator import annotate
from llm_annotator.outputs.result import AnnotationResult
from llm_annotator.outputs.review import import_reviews
from llm_annotator.store.reviews import HUMAN_VOTES
from llm_annotator.testing import sampling_responder
from tests.label_studio import LabelStudio

LABELS = ["positive", "negative", "neutral"]


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    server = LabelStudio(tmp_path_factory.mktemp("label-studio")).start()
    try:
        yield server
    finally:
        server.stop()


def cli(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "llm_annotator", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def counts(imported: dict) -> tuple[int, int, int]:
    return imported["added"], imported["updated"], imported["unchanged"]


def human_votes(run) -> dict[tuple[str, str], str]:
    votes = AnnotationResult.load(run).votes
    human = votes[votes["annotator"].str.startswith("human:")]
    return {(row.item_id, row.annotator): row.label for row in human.itertuples()}


def test_reviews_made_in_label_studio_come_back_as_human_votes(label_studio, fake_server, tmp_path):
    server = fake_server(sampling_responder(LABELS, "sentiment"))
    run = tmp_path / "run"
    rows = [{"id": f"r{i}", "text": f"review number {i}"} for i in range(4)]
    annotate(rows, "sentiment", [{"model": "openai/fake", "name": "model-a"}], samples=3, api_base=server.url,
             id_column="id", out=run, progress=False)
    cli("review", str(run))
    tasks = json.loads((run / "review.label_studio.json").read_text())
    assert sorted(t["data"]["item_id"] for t in tasks) == ["r0", "r1", "r2", "r3"]

    admin = label_studio.admin()
    bob = label_studio.sign_up("bob@example.com", "bob-reviews-1234")
    admin_id, bob_id = admin.whoami()["id"], bob.whoami()["id"]
    assert admin_id != bob_id
    project = admin.create_project("review of run", LABELS)
    imported = admin.import_tasks(project, tasks)
    assert (imported["task_count"], imported["prediction_count"]) == (4, 4)
    task = {t["data"]["item_id"]: t["id"] for t in admin.tasks(project)}

    for item, label in {"r0": "positive", "r1": "negative", "r2": "neutral", "r3": "positive"}.items():
        admin.annotate(task[item], label)
    bob_r0 = bob.annotate(task["r0"], "negative")
    bob.annotate(task["r1"], "negative")
    bob.skip(task["r2"])  # a skipped task is no answer; r3 bob never opened
    export = tmp_path / "export.json"
    export.write_bytes(admin.export(project))
    # what the import reads, as this Label Studio writes it: completed_by is the user's id
    annotations = [a for t in json.loads(export.read_text()) for a in t["annotations"]]
    assert sorted(a["completed_by"] for a in annotations) == sorted([admin_id] * 4 + [bob_id] * 3)

    out = cli("review", str(run), "--import", str(export))
    assert "6 answers added, 0 changed, 0 already recorded" in out, out
    a, b = f"human:label-studio-{admin_id}", f"human:label-studio-{bob_id}"
    expected = {("r0", a): "positive", ("r1", a): "negative", ("r2", a): "neutral", ("r3", a): "positive",
                ("r0", b): "negative", ("r1", b): "negative"}
    assert human_votes(run) == expected
    assert AnnotationResult.load(run).annotators == ["model-a", *sorted([a, b])]

    # the same export again, and the same answers as JSON-MIN: nothing new
    recorded = (run / HUMAN_VOTES).read_bytes()
    assert counts(import_reviews(run, export)) == (0, 0, 6)
    minimal = tmp_path / "export_min.json"
    minimal.write_bytes(admin.export(project, "JSON_MIN"))
    assert counts(import_reviews(run, minimal)) == (0, 0, 6)
    assert (run / HUMAN_VOTES).read_bytes() == recorded
    assert human_votes(run) == expected

    # bob changes his mind in Label Studio: the next export replaces his answer, adds no vote
    bob.change(bob_r0["id"], "positive")
    export.write_bytes(admin.export(project))
    assert counts(import_reviews(run, export)) == (0, 1, 5)
    assert human_votes(run) == {**expected, ("r0", b): "positive"}
