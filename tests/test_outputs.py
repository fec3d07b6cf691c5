"""Structured answers: a task's named outputs of each kind, read from one answer with their
own validity, kept per vote through the in-memory, streamed and batch paths."""

import hashlib
import json

import pandas as pd
import pytest

from llm_annotator import annotate, annotate_stream
from llm_annotator.api import collect
from llm_annotator.core.errors import TaskError
from llm_annotator.core.parse import parse_outputs, structure
from llm_annotator.core.task import load_task, parse_task_text
from llm_annotator.store.votelog import read_votes
from llm_annotator.testing import Reply, user_text

TASK = """---
name: rate
labels: [neg, neu, pos]
outputs:
  sentiment: {kind: categorical}
  intensity: {kind: ordinal, labels: [low, medium, high], aliases: {mid: medium}}
  arousal: {kind: numeric, range: [1, 5], integer: true}
  emotions: {kind: multi_label, labels: [joy, anger, sadness]}
explanations: [reason]
---
Text: {{ text }}
"""


def h(text: str, salt: str = "") -> int:
    return int(hashlib.sha256((salt + text).encode()).hexdigest(), 16)


def scripted(text: str) -> dict:
    """The answer the server gives an item: every output a function of the text."""
    n = h(text)
    answer = {"reason": f"because {n % 97}", "sentiment": ["neg", "neu", "pos"][n % 3],
              "intensity": ["low", "medium", "high"][n % 5 % 3], "arousal": 1 + n % 5,
              "emotions": [e for k, e in enumerate(["joy", "anger", "sadness"]) if n >> k & 1]}
    if n % 7 == 0:
        del answer["arousal"]  # one output missing: the others stay valid
    return answer


def respond(request):
    return json.dumps(scripted(user_text(request)))


@pytest.fixture
def task_file(tmp_path):
    path = tmp_path / "rate.jinja"
    path.write_text(TASK, encoding="utf-8")
    return path


def rows(n=24):
    return [{"id": f"r{i}", "text": f"line {i} of the test"} for i in range(n)]


def test_a_task_declares_outputs_of_each_kind_and_its_primary_is_the_first(task_file):
    task = load_task(task_file)
    assert [(s.name, s.kind) for s in task.output_specs] == [
        ("sentiment", "categorical"), ("intensity", "ordinal"), ("arousal", "numeric"), ("emotions", "multi_label")]
    assert task.labels == ("neg", "neu", "pos") and task.output == "sentiment" and task.structured
    assert task.output_spec("arousal").categories == ("1", "2", "3", "4", "5")
    schema = task.response_schema()["json_schema"]["schema"]
    assert schema["properties"]["arousal"] == {"type": "integer"}
    assert schema["properties"]["emotions"]["items"]["enum"] == ["joy", "anger", "sadness"]
    assert schema["properties"]["reason"] == {"type": "string"}
    assert set(schema["required"]) == {"sentiment", "intensity", "arousal", "emotions", "reason"}
    real = task.output_spec("arousal").model_copy(update={"integer": False, "bins": 4})
    assert real.categories == ("1..2", "2..3", "3..4", "4..5") and real.bin_of(5.0) == "4..5"


@pytest.mark.parametrize(("outputs", "message"), [
    ("  x: {kind: numeric}", "numeric output 'x' needs a range"),
    ("  x: {kind: numeric, range: [5, 1]}", "low < high"),
    ("  x: {kind: numeric, range: [1, 5], labels: [a]}", "takes a range, not labels"),
    ("  x: {kind: ordinal, labels: [a], range: [1, 2]}", "range, integer and bins are for numeric"),
    ("  x: {kind: sideways, labels: [a]}", "output 'x': kind: Input should be"),
    ("  x: {labels: [a]}\n  y: {path: x, labels: [b]}", "read the same JSON field"),
    ("  x: {labels: [a]}\n  y: {kind: ordinal}", "output 'y' has no labels"),
    ("  x: [a, b]", "output 'x' must be a mapping"),
    ("  x: {labels: [a, b]}\n  y: {labels: [c], path: x.y}", "the fields 'x' and 'x.y' overlap"),
    ("  x: {labels: [a]}\nexplanations: [sample_index]", "the explanation 'sample_index' has a name"),
    ("  x: {labels: [a]}\nexplanations: [reasoning]", "the explanation 'reasoning' has a name"),
    ("  x: {kind: multi_label, labels: ['rock|pop', jazz]}", "'rock|pop' holds one of"),
    ("  x: {kind: numeric, range: [0, 1], bins: true}", "bins must be a whole number"),
    ("  x: {kind: numeric, range: [0, 1], bins: 1000000}", "bins must be between 1 and 1000"),
    ("  x: {kind: numeric, range: [-1e308, 1e308]}", "the range is too wide"),
])
def test_a_bad_output_declaration_is_one_line_naming_the_output(outputs, message):
    with pytest.raises(TaskError) as caught:
        parse_task_text(f"---\nname: t\noutputs:\n{outputs}\n---\n{{{{ text }}}}\n", "t.jinja")
    assert message in str(caught.value) and "t.jinja" in str(caught.value) and "\n" not in str(caught.value)


def test_each_output_has_its_own_validity_and_reasons(task_file):
    task = load_task(task_file)
    read = parse_outputs('{"sentiment": "POS", "intensity": "mid", "arousal": 7, "emotions": ["Joy", "sad"]}', task)
    assert (read["sentiment"].label, read["intensity"].label) == ("pos", "medium")
    assert read["arousal"].error == "out_of_range:7"
    assert read["emotions"].error == "out_of_label_set:sad"  # no nearest label: the whole set is invalid
    read = parse_outputs('{"sentiment": "neu", "intensity": "low", "arousal": "2.5", "emotions": []}', task)
    assert read["arousal"].error == "out_of_range:2.5"  # not whole on an integer scale
    assert read["emotions"].label == "" and read["emotions"].data == ()  # the empty set is an answer
    read = parse_outputs('{"sentiment": "neu", "arousal": 4, "emotions": "anger, joy"}', task)
    assert read["intensity"].error == "missing_field:intensity"
    assert (read["arousal"].label, read["arousal"].data) == ("4", 4)
    assert read["emotions"].data == ("joy", "anger")  # in the label set's order
    read = parse_outputs("pos", task)  # a bare answer names the primary output only
    assert read["sentiment"].label == "pos" and read["arousal"].error == "unparseable"
    assert parse_outputs("", task)["emotions"].error == "empty"
    outputs, explanation = structure('{"sentiment": "neg", "reason": "flat voice", "arousal": true}', task)
    assert outputs["arousal"] == {"error": "out_of_range:true"} and explanation == {"reason": "flat voice"}


def check_votes(votes, texts):
    """Every vote's outputs are the scripted answer's, each with its own validity."""
    assert votes
    for vote in votes:
        want = scripted(texts[vote.item_id])
        assert vote.label == want["sentiment"] and vote.explanation == {"reason": want["reason"]}
        assert vote.outputs["intensity"] == {"label": want["intensity"]}
        assert vote.outputs["emotions"]["value"] == want["emotions"]
        if "arousal" in want:
            assert vote.outputs["arousal"] == {"label": str(want["arousal"]), "value": want["arousal"]}
        else:
            assert vote.outputs["arousal"] == {"error": "missing_field:arousal"} and vote.error is None


def test_every_output_flows_through_the_in_memory_path(fake_server, task_file, tmp_path):
    server = fake_server(respond)
    data = rows()
    texts = {r["id"]: f"Text: {r['text']}" for r in data}
    result = annotate(data, task_file, ["openai/fake"], samples=2, temperature=1.0, api_base=server.url,
                      id_column="id", out=tmp_path / "run", progress=False)
    check_votes(list(read_votes(tmp_path / "run" / "votes.jsonl")), texts)
    assert result.output_names == ["sentiment", "intensity", "arousal", "emotions"]
    arousal = result.output("arousal").votes
    missing = {i for i, t in texts.items() if "arousal" not in scripted(t)}
    assert missing and set(arousal.loc[arousal["error"].notna(), "item_id"]) == missing
    valid = arousal[arousal["error"].isna()]
    assert valid["value"].tolist() == [scripted(texts[i])["arousal"] for i in valid["item_id"]]
    assert result.output("intensity").task.labels == ("low", "medium", "high")
    by_output = result.manifest["counts"]["by_output"]
    assert by_output["arousal"] == {"votes": 48, "valid": 48 - 2 * len(missing),
                                    "by_reason": {"missing_field": 2 * len(missing)}}
    assert by_output["sentiment"]["valid"] == 48 and by_output["intensity"]["by_reason"] == {}
    soft = result.output("intensity").soft_labels()
    for item, row in soft.iterrows():
        assert row[scripted(texts[item])["intensity"]] == 1.0
    assert result.output("sentiment").labels()["label"].tolist() == result.labels()["label"].tolist()
    long = result.votes_by_output()
    assert len(long) == 4 * len(result.votes) and long.groupby("output").size().to_dict() == {
        "sentiment": 48, "intensity": 48, "arousal": 48, "emotions": 48}
    assert long.loc[long["output"] == "arousal", "error"].notna().sum() == arousal["error"].notna().sum()


def test_every_output_flows_through_the_streamed_path(fake_server, task_file, tmp_path):
    server = fake_server(respond)
    data = rows(30)
    texts = {r["id"]: f"Text: {r['text']}" for r in data}
    run = annotate_stream(data, task_file, ["openai/fake"], samples=2, temperature=1.0, api_base=server.url,
                          id_column="id", out=tmp_path / "run", chunk_rows=7, progress=False)
    assert run.manifest["status"] == "complete"
    check_votes(list(read_votes(tmp_path / "run" / "votes.jsonl")), texts)
    missing = sum("arousal" not in scripted(t) for t in texts.values())
    assert run.manifest["counts"]["by_output"]["arousal"] == {"votes": 60, "valid": 60 - 2 * missing,
                                                              "by_reason": {"missing_field": 2 * missing}}
    loaded = run.load()
    values = loaded.output("arousal").votes.dropna(subset=["label"])
    assert sorted(values["value"].unique()) == sorted({scripted(t)["arousal"] for t in texts.values()
                                                       if "arousal" in scripted(t)})


def test_every_output_flows_through_a_provider_batch(fake_server, task_file, tmp_path):
    server = fake_server(respond)
    data = rows(12)
    texts = {r["id"]: f"Text: {r['text']}" for r in data}
    out = tmp_path / "run"
    annotate(data, task_file, ["openai/fake"], samples=2, temperature=1.0, api_base=server.url, id_column="id",
             out=out, batch=True, progress=False)
    done = collect(out, data=data, wait=True, poll_s=0.01, progress=False)
    assert done.manifest["status"] == "complete"
    check_votes(list(read_votes(out / "votes.jsonl")), texts)
    assert set(done.output("emotions").votes["output"]) == {"emotions"}


def test_a_changed_output_is_judged_again_from_the_kept_answers_without_a_request(fake_server, task_file, tmp_path):
    """Another alias for a second output changes how kept answers read, not what is asked of
    the model when the schema is the same: votes are re-read, nothing is asked again."""
    server = fake_server(lambda request: json.dumps({"sentiment": "neu", "intensity": "mid-level", "arousal": 3,
                                                     "emotions": [], "reason": "r"}))
    data = rows(4)
    first = annotate(data, task_file, ["openai/fake"], api_base=server.url, id_column="id", out=tmp_path / "run",
                     progress=False)
    assert first.output("intensity").votes["error"].tolist() == ["out_of_label_set:mid-level"] * 4
    calls = server.calls
    task_file.write_text(TASK.replace("{mid: medium}", "{mid-level: medium}"), encoding="utf-8")
    again = annotate(data, task_file, ["openai/fake"], api_base=server.url, id_column="id", out=tmp_path / "run",
                     progress=False, overwrite=True)
    assert server.calls == calls
    assert again.output("intensity").votes["label"].tolist() == ["medium"] * 4


def test_what_is_asked_decides_a_new_request_what_is_read_decides_a_new_judgement(fake_server, task_file):
    """An ordinal output's labels are in the answer schema: other labels are another request.
    A numeric range is not asked (the schema says integer): a narrower range re-reads the
    kept answers, and a number outside it becomes invalid, with no request."""
    server = fake_server(respond)
    data = rows(12)
    annotate(data, task_file, ["openai/fake"], api_base=server.url, id_column="id", progress=False)
    calls = server.calls
    task_file.write_text(TASK.replace("range: [1, 5]", "range: [1, 3]"), encoding="utf-8")
    narrow = annotate(data, task_file, ["openai/fake"], api_base=server.url, id_column="id", progress=False)
    assert server.calls == calls
    votes = narrow.output("arousal").votes
    high = votes["raw"].map(lambda raw: json.loads(raw).get("arousal", 0) > 3)
    assert high.any() and votes.loc[high, "error"].str.startswith("out_of_range:").all()
    task_file.write_text(TASK.replace("[low, medium, high]", "[quiet, medium, loud]"), encoding="utf-8")
    annotate(data, task_file, ["openai/fake"], api_base=server.url, id_column="id", progress=False)
    assert server.calls == calls + 12


def test_a_reasoning_model_s_reasoning_is_kept_without_its_key(fake_server, task_file, tmp_path):
    secret = "sk-reasoning-canary-0123456789"

    def reasoning(request):
        content = json.dumps(scripted(user_text(request)))
        return Reply(fields={"choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": content, "reasoning_content": f"I weighed it; key {secret}"}}]})

    server = fake_server(reasoning)
    result = annotate(rows(2), task_file, ["openai/fake"], api_base=server.url, api_key=secret, id_column="id",
                      out=tmp_path / "run", progress=False)
    explanations = result.votes["explanation"].tolist()
    assert all(e["reasoning"].startswith("I weighed it") and secret not in e["reasoning"] for e in explanations)
    assert all("reason" in e for e in explanations)
    assert secret not in (tmp_path / "run" / "votes.jsonl").read_text()


def test_a_plain_task_s_votes_are_as_they_were(fake_server, tmp_path):
    server = fake_server(lambda request: '{"sentiment": "positive"}')
    annotate(rows(2), "sentiment", ["openai/fake"], api_base=server.url, id_column="id", out=tmp_path / "run",
             progress=False)
    line = json.loads((tmp_path / "run" / "votes.jsonl").read_text().splitlines()[0])
    assert "outputs" not in line and "explanation" not in line and line["label"] == "positive"


def test_the_builtin_structured_tasks(fake_server):
    melt = load_task("emotion_melt")
    assert [s.name for s in melt.output_specs] == ["emotion", "loudness", "pitch", "rhythm_speed",
                                                   "emotional_impact"]
    assert melt.output_spec("rhythm_speed").labels == ("slow", "medium", "fast")
    assert melt.explanations == ("character", "context")
    dims = load_task("dimensions")
    assert [(s.name, s.kind, s.range) for s in dims.output_specs] == [
        ("arousal", "numeric", (1, 5)), ("valence", "numeric", (1, 5)), ("dominance", "numeric", (1, 5))]
    multi = load_task("emotions_multi")
    assert multi.primary.kind == "multi_label" and "sadness" in multi.primary.labels
    server = fake_server(lambda request: '{"reason": "x", "arousal": 5, "valence": "2", "dominance": 9}')
    row = {"Speaker": "Joey", "Season": 3, "Episode": 5, "Utterance": "How you doin'?"}
    result = annotate([row], "dimensions", ["openai/fake"], api_base=server.url, progress=False)
    values = {name: r.votes[["value", "error"]].iloc[0].tolist() for name, r in result.outputs().items()}
    assert values == {"arousal": [5, None], "valence": [2, None], "dominance": [None, "out_of_range:9"]}


def test_melt_s_five_elements_come_out_with_their_own_soft_labels(fake_server, shared_data):
    """MELT's rows through emotion_melt: each of the five elements is an output with its own
    votes, soft labels and agreement between two annotators."""
    table = pd.read_csv(shared_data / "melt" / "meld_train.csv").head(40)
    emotion = {f"{r.Speaker} at s{r.Season}e{r.Episode} said: \"{r.Utterance}\"": r.llm_label
               for r in table.itertuples()}
    scales = {"loudness": ["low", "medium", "high"], "pitch": ["low", "medium", "high"],
              "rhythm_speed": ["slow", "medium", "fast"], "emotional_impact": ["low", "medium", "high"]}

    def melt(request):
        cue = user_text(request).splitlines()[-1]
        salt = request["model"]
        elements = {"emotion": emotion[cue]} | {k: v[h(cue, salt + k) % 3] for k, v in scales.items()}
        return json.dumps({"character": "a friend", "context": "at the coffee house", "elements": elements})

    server = fake_server(melt)
    result = annotate(table, "emotion_melt", ["openai/a", "openai/b"], api_base=server.url, id_column="Sr_No.",
                      progress=False)
    assert result.output_names == ["emotion", "loudness", "pitch", "rhythm_speed", "emotional_impact"]
    for name, out in result.outputs().items():
        soft = out.soft_labels()
        assert list(soft.columns) == list(out.task.labels) and len(soft) == 40
        assert soft.sum(axis=1).round(9).eq(1).all()
        figures = out.agreement(bootstrap=0)
        assert -1 <= figures["krippendorff_alpha"] <= 1
        if name == "emotion":
            assert figures["krippendorff_alpha"] == 1.0  # both annotators give MELT's label
            assert result.labels()["label"].tolist() == table["llm_label"].tolist()
        else:
            assert out.task.labels == tuple(scales[name]) and figures["krippendorff_alpha"] < 1.0


def test_agree_measures_every_output_with_a_gold_column_each(fake_server, task_file, tmp_path):
    import subprocess
    import sys

    server = fake_server(respond)
    data = rows(16)
    for row in data:
        want = scripted(f"Text: {row['text']}")
        row["gold"], row["gold_arousal"] = want["sentiment"], want.get("arousal", 1) + 1
    annotate(data, task_file, ["openai/a", "openai/b"], samples=2, temperature=1.0, api_base=server.url,
             id_column="id", out=tmp_path / "run", progress=False)

    def agree(*args):
        return subprocess.run([sys.executable, "-m", "llm_annotator", "agree", str(tmp_path / "run"), *args,
                               "--bootstrap", "20"], capture_output=True, text=True)

    done = agree("--gold", "gold", "--gold", "arousal=gold_arousal")
    assert done.returncode == 0, done.stderr
    for name, kind in [("sentiment", "categorical"), ("intensity", "ordinal"), ("arousal", "numeric"),
                       ("emotions", "multi_label")]:
        assert f"== output {name} ({kind}) ==" in done.stdout
    figures = json.loads((tmp_path / "run" / "agreement.json").read_text())
    assert figures["output"] == "sentiment" and figures["vs_gold"]["openai/a"]["accuracy"] == 1.0
    arousal = figures["outputs"]["arousal"]
    assert arousal["vs_gold"]["openai/a"]["mae"] == 1.0  # every gold value is the answer + 1
    assert set(figures["outputs"]) == {"intensity", "arousal", "emotions"}
    only = agree("--output", "emotions", "--out", str(tmp_path / "e.json"))
    assert only.returncode == 0 and "== output emotions" in only.stdout and "sentiment" not in only.stdout
    report = subprocess.run([sys.executable, "-m", "llm_annotator", "report", str(tmp_path / "run"), "--gold",
                             "gold", "--gold", "arousal=gold_arousal"], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "run" / "report.html").read_text()
    assert "gold_arousal" in page and "Output arousal" in page
    wrong = agree("--gold", "pitch=gold")
    assert wrong.returncode != 0 and "no output 'pitch'" in wrong.stderr and "OUTPUT=COLUMN" in wrong.stderr
    left_out = agree("--output", "sentiment", "--gold", "arousal=gold_arousal")
    assert left_out.returncode != 0 and "--output leaves out" in left_out.stderr


def test_review_and_trust_refuse_a_multi_label_primary_with_the_way_out(fake_server, tmp_path):
    from llm_annotator.core.errors import ConfigError
    from llm_annotator.outputs.review import next_items
    from llm_annotator.outputs.trust import trust

    server = fake_server(lambda request: '{"reason": "r", "emotions": ["joy"]}')
    row = {"Speaker": "Joey", "Season": 3, "Episode": 5, "Utterance": "How you doin'?"}
    result = annotate([row], "emotions_multi", ["openai/fake"], api_base=server.url, progress=False)
    for call, what in ((lambda: next_items(result, 1), "review"), (lambda: trust(result), "trust")):
        with pytest.raises(ConfigError, match=rf"^{what} works on one label per item, .* 'emotions' .* "
                                              r"multi-label; fix: .*--gold emotions=COLUMN"):
            call()


def test_input_columns_join_a_numeric_or_multi_label_output_as_annotators(fake_server, task_file):
    """A column of numbers (on a real scale too) or of label sets is read by the output's kind."""
    server = fake_server(respond)
    data = rows(8)
    for k, row in enumerate(data):
        row["rater"] = str(1 + k % 5)
        row["tags"] = "joy|anger" if k % 2 else ""
    result = annotate(data, task_file, ["openai/fake"], api_base=server.url, id_column="id", progress=False)
    arousal = result.output("arousal").with_columns(["rater"])
    assert arousal.votes.loc[arousal.votes["annotator"] == "rater", "value"].tolist() == [1 + k % 5 for k in range(8)]
    assert arousal.agreement(bootstrap=0)["level"] == "interval"
    emotions = result.output("emotions").with_columns(["tags"])
    sets = emotions.votes.loc[emotions.votes["annotator"] == "tags", "value"].tolist()
    assert sets == [["joy", "anger"]] * 4  # empty cells are no vote
    assert emotions.soft_labels(by_annotator=True).xs("tags", level="annotator")["anger"].tolist() == [1.0] * 4


def test_shards_merge_with_every_output_and_their_explanations(fake_server, task_file, tmp_path):
    from llm_annotator.outputs.merge import merge_runs

    server = fake_server(respond)
    data = rows(10)
    whole = annotate(data, task_file, ["openai/fake"], api_base=server.url, id_column="id", progress=False,
                     out=tmp_path / "whole")
    for index in (0, 1):
        annotate(data, task_file, ["openai/fake"], api_base=server.url, id_column="id", shard=f"{index}/2",
                 out=tmp_path / f"s{index}", progress=False)
    merged = merge_runs([tmp_path / "s0", tmp_path / "s1"], tmp_path / "merged")
    frame = pd.read_csv(tmp_path / "merged" / "labels.csv").set_index("item_id").sort_index()
    expected = pd.read_csv(tmp_path / "whole" / "labels.csv").set_index("item_id").sort_index()
    assert list(frame.columns) == list(expected.columns) and "arousal_mean" in frame.columns
    pd.testing.assert_frame_equal(frame, expected)
    explained = pd.read_csv(tmp_path / "merged" / "explanations.csv")
    assert sorted(explained["reason"]) == sorted(whole.explanations()["reason"])
    assert merged.output("emotions").labels()["expected_size"].notna().all()
    annotate(data, "sentiment", ["openai/fake"], api_base=server.url, id_column="id", progress=False,
             out=tmp_path / "whole", overwrite=True)  # another job: the old explanations go with it
    assert not (tmp_path / "whole" / "explanations.csv").exists()


def test_numbers_on_a_bin_edge_are_in_the_bin_they_start_and_bins_have_distinct_names():
    from llm_annotator.core.outputs import OutputSpec

    tenths = OutputSpec(name="v", kind="numeric", range=(-1, 1), bins=10)
    assert [tenths.bin_of(x) for x in (-1, -0.2, 0, 0.6, 1)] == ["-1..-0.8", "-0.2..0", "0..0.2", "0.6..0.8", "0.8..1"]
    assert OutputSpec(name="v", kind="numeric", range=(0.1, 0.4), bins=3).bin_of(0.3) == "0.3..0.4"
    narrow = OutputSpec(name="p", kind="numeric", range=(1000, 1001), bins=10).categories
    assert len(set(narrow)) == 10 and narrow[0] == "1000..1000.1"
    wide = OutputSpec(name="n", kind="numeric", range=(0, 100), integer=True)  # 101 values: 10 bins
    assert wide.bin_of(100) == "90..100" and wide.bin_of(10) == "10..20"


def test_a_numeric_primary_s_soft_label_is_its_bin_not_the_first_token_s_log_probabilities(fake_server, tmp_path):
    """A number's first token ("0") begins every bin of [0, 1]: log-probabilities there say
    nothing about the bin, so the vote counts one-hot in its own bin."""
    task = tmp_path / "v.jinja"
    task.write_text("---\nname: v\noutputs:\n  valence: {kind: numeric, range: [0, 1]}\n---\n{{ text }}\n")
    server = fake_server(lambda request: '{"valence": 0.93}')  # the server sends log-probabilities per token
    result = annotate(rows(2), task, ["openai/fake"], api_base=server.url, id_column="id", progress=False)
    table = result.labels()
    assert table["label"].tolist() == ["0.9..1"] * 2 and table["p_0.9..1"].tolist() == [1.0, 1.0]
    assert result.votes["distribution"].isna().all()


def test_a_key_behind_json_escapes_is_scrubbed_before_the_answer_is_read(fake_server, task_file, tmp_path):
    secret = "sk-canary-ZZ1234567890abcdef"
    escaped = secret.replace("-", "\\u002d")
    server = fake_server(lambda request: '{"sentiment": "neu", "intensity": "' + escaped + '", "reason": "I saw '
                         + escaped + '", "arousal": 2, "emotions": []}')
    result = annotate(rows(2), task_file, ["openai/fake"], api_base=server.url, api_key=secret, id_column="id",
                      out=tmp_path / "run", progress=False)
    for name in ("votes.jsonl", "labels.csv", "labels.jsonl", "explanations.csv"):
        assert secret not in (tmp_path / "run" / name).read_text(), name
    assert result.votes["explanation"].iloc[0] == {"reason": "I saw ***"}
    assert result.output("intensity").votes["error"].tolist() == ["out_of_label_set:***"] * 2


def test_a_non_text_explanation_is_kept_whole_and_set_texts_are_read_strictly(task_file):
    task = load_task(task_file)
    traits = ["funny", "naive", "loyal", "food-loving", "actor", "roommate", "friend"]
    _, explanation = structure(json.dumps({"sentiment": "pos", "reason": {"traits": traits}}), task)
    assert json.loads(explanation["reason"]) == {"traits": traits}
    assert parse_outputs('{"emotions": "[]"}', task)["emotions"].data == ()  # a JSON list written as text
    assert parse_outputs('{"emotions": ",,,"}', task)["emotions"].error == "out_of_label_set:,,,"


def test_gold_sets_read_aliases_as_answers_do(fake_server, task_file):
    server = fake_server(lambda request: '{"sentiment": "neu", "emotions": ["anger"]}')
    data = rows(3)
    for row, gold in zip(data, ["Mad", "anger|JOY", "[]"], strict=True):
        row["gold_set"] = gold
    task_file.write_text(TASK.replace("aliases: {sad: sadness}", "").replace(
        "labels: [joy, anger, sadness]}", "labels: [joy, anger, sadness], aliases: {mad: anger}}"), encoding="utf-8")
    result = annotate(data, task_file, ["openai/fake"], api_base=server.url, id_column="id", progress=False)
    gold = result.output("emotions").gold_sets("gold_set")
    assert gold.tolist() == [[0, 1, 0], [1, 1, 0], [0, 0, 0]]


def test_the_cli_says_why_an_output_other_than_the_first_holds_no_value(fake_server, task_file, tmp_path):
    import subprocess
    import sys

    server = fake_server(respond)
    table = tmp_path / "rows.csv"
    pd.DataFrame(rows(20)).to_csv(table, index=False)
    done = subprocess.run([sys.executable, "-m", "llm_annotator", "annotate", str(table), "-t", str(task_file),
                           "-m", "openai/fake", "--api-base", server.url, "--id-column", "id", "--out",
                           str(tmp_path / "run"), "-q"], capture_output=True, text=True)
    missing = sum("arousal" not in scripted(f"Text: line {i} of the test") for i in range(20))
    assert done.returncode == 0 and missing
    assert f"output arousal: {20 - missing} valid of 20; missing_field x{missing}" in done.stderr
    assert "output intensity: 20 valid of 20" in done.stdout
