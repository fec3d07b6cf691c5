"""Demonstrations chosen per item: real pool files, compiled prompts, annotate on loopback."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from llm_annotator import annotate
from llm_annotator.core.errors import ConfigError, DataError, TaskError, TemplateError
from llm_annotator.core.media import default_root
from llm_annotator.core.prompts import compile_prompt, prompt_hash
from llm_annotator.core.task import load_task, parse_task_text

LABELS = ["pos", "neg", "neu", "mixed"]

TASK = """---
name: tone
labels: [pos, neg, neu, mixed]
demonstrations: DEMOS
---
{% for demo in demonstrations -%}
Text: {{ demo.text }} -> {{ demo.label }}
{% endfor -%}
Text: {{ text }} ->
"""

WORDS = ["apple", "river", "stone", "cloud", "piano", "tiger", "lemon", "candle", "forest", "rocket"]


def pool_rows(n: int = 40) -> list[dict[str, str]]:
    """Texts of two words each, labels in turn (ids p0 ... p{n-1})."""
    return [{"id": f"p{i}", "text": f"{WORDS[i % 10]} {WORDS[(i * 3 + 1) % 10]} number {i}",
             "tone": LABELS[i % 4]} for i in range(n)]


def write_task(folder: Path, demos: str) -> Path:
    path = folder / "tone.jinja"
    path.write_text(TASK.replace("DEMOS", demos), encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    pd.DataFrame(pool_rows()).to_csv(folder / "pool.csv", index=False)
    data = [{"id": f"d{i}", "text": f"{WORDS[i]} {WORDS[(i + 5) % 10]} today"} for i in range(10)]
    data.append({"id": "p7", "text": "a row whose id is a pool row's"})
    data.append({"id": "x", "text": pool_rows()[12]["text"]})  # a pool row's very text, another id
    pd.DataFrame(data).to_csv(folder / "data.csv", index=False)
    return folder


def prompt_for(corpus: Path, demos: str):
    return compile_prompt(load_task(write_task(corpus, demos)), corpus)


def data_rows(corpus: Path) -> list[dict[str, str]]:
    return pd.read_csv(corpus / "data.csv").to_dict("records")


def labels_of(ids: list[str]) -> list[str]:
    by_id = {r["id"]: r["tone"] for r in pool_rows()}
    return [by_id[i] for i in ids]


def test_selection_is_deterministic_per_item_and_never_the_item(corpus):
    demos = "{pool: pool.csv, label: tone, id_column: id, k: 4}"
    first, second = prompt_for(corpus, demos), prompt_for(corpus, demos)
    rows = data_rows(corpus)
    chosen = {r["id"]: first.demonstrations_of(r, r["id"]) for r in rows}
    # another compiled prompt (another process, a re-run) picks the very same examples
    assert chosen == {r["id"]: second.demonstrations_of(r, r["id"]) for r in rows}
    assert all(len(ids) == 4 for ids in chosen.values())
    assert len({tuple(ids) for ids in chosen.values()}) > 5  # seeded by the item id: items differ
    assert "p7" not in chosen["p7"]    # the same item id
    assert "p12" not in chosen["x"]    # the same text
    # never the item, over many items drawing from a tiny pool
    for i in range(40):
        row = pool_rows()[i]
        assert row["id"] not in first.demonstrations_of(row, row["id"])
    # what render shows is what demonstrations_of names, in that order
    messages = first.render(rows[0], item_id=rows[0]["id"])
    shown = [line.split(" -> ")[0].removeprefix("Text: ") for line in messages[-1]["content"].splitlines()[:4]]
    texts = {r["id"]: r["text"] for r in pool_rows()}
    assert shown == [texts[i] for i in chosen[rows[0]["id"]]]
    # another seed draws other examples
    reseeded = prompt_for(corpus, "{pool: pool.csv, label: tone, id_column: id, k: 4, seed: 1}")
    assert [reseeded.demonstrations_of(r, r["id"]) for r in rows] != list(chosen.values())


def test_a_task_without_demonstrations_records_none(corpus):
    prompt = compile_prompt(load_task("sentiment"))
    assert prompt.demonstrations_of({"text": "fine"}, "a") is None


def test_stratified_covers_the_labels_and_handles_small_pools(corpus):
    rows = data_rows(corpus)
    four = prompt_for(corpus, "{pool: pool.csv, label: tone, id_column: id, k: 4}")
    for r in rows:
        assert sorted(labels_of(four.demonstrations_of(r, r["id"]))) == sorted(LABELS)
    six = prompt_for(corpus, "{pool: pool.csv, label: tone, id_column: id, k: 6}")
    for r in rows:
        assert set(labels_of(six.demonstrations_of(r, r["id"]))) == set(LABELS)
    two = prompt_for(corpus, "{pool: pool.csv, label: tone, id_column: id, k: 2}")
    for r in rows:
        assert len(set(labels_of(two.demonstrations_of(r, r["id"])))) == 2
    # a label without examples is skipped; a pool smaller than k gives all its rows but the item
    pd.DataFrame([r for r in pool_rows(6) if r["tone"] != "mixed"]).to_csv(corpus / "small.csv", index=False)
    small = prompt_for(corpus, "{pool: small.csv, label: tone, id_column: id, k: 8}")
    assert sorted(small.demonstrations_of(rows[0], "d0")) == ["p0", "p1", "p2", "p4", "p5"]
    assert sorted(small.demonstrations_of({"text": "x"}, "p4")) == ["p0", "p1", "p2", "p5"]


def test_similar_picks_the_lexically_closest_most_similar_last(corpus):
    prompt = prompt_for(corpus, "{pool: pool.csv, label: tone, id_column: id, k: 3, select: similar}")
    # '13' is in one pool text only; 'tiger' and 'cloud' in a few, 'number' in all
    row = {"text": "tiger cloud number 13", "id": "q"}
    chosen = prompt.demonstrations_of(row, "q")
    texts = {r["id"]: r["text"] for r in pool_rows()}
    assert chosen[-1] == "p13" and texts["p13"] == "cloud apple number 13"
    assert all("tiger" in texts[i] or "cloud" in texts[i] for i in chosen)
    # the same text is the item itself, never shown
    same = prompt.demonstrations_of({"text": texts["p13"]}, "q")
    assert "p13" not in same and len(same) == 3


def test_changing_a_pool_row_re_asks_exactly_the_items_shown_it(corpus, fake_server):
    server = fake_server(lambda request: "pos")
    task = write_task(corpus, "{pool: pool.csv, label: tone, id_column: id, k: 2}")
    data = corpus / "data.csv"

    def run():
        return annotate(str(data), task, [{"model": "openai/fake", "api_base": server.url}], id_column="id",
                        api_key="sk-test", progress=False)

    first = run()
    asked = server.calls
    assert asked == len(data_rows(corpus))
    prompt = compile_prompt(load_task(task), corpus)
    shown = {r["id"]: prompt.demonstrations_of(r, r["id"]) for r in data_rows(corpus)}
    edited = next(p for p in (f"p{i}" for i in range(40)) if 0 < sum(p in s for s in shown.values()) < 4)
    affected = {item for item, ids in shown.items() if edited in ids}
    # the same pool again: nothing asked, every vote from the cache
    again = run()
    assert server.calls == asked and again.votes["cached"].all()
    pool = pd.read_csv(corpus / "pool.csv")
    pool.loc[pool["id"] == edited, "text"] = "words no one used before"
    pool.to_csv(corpus / "pool.csv", index=False)
    third = run()
    assert server.calls == asked + len(affected)
    votes = third.votes.set_index("item_id")
    assert set(votes.index[~votes["cached"].astype(bool)]) == affected
    changed = {i for i in votes.index if votes.loc[i, "fingerprint"] != first.votes.set_index("item_id").loc[i, "fingerprint"]}
    assert changed == affected


def test_prompt_hash_covers_the_demonstrations(corpus):
    rows = data_rows(corpus)
    a = prompt_for(corpus, "{pool: pool.csv, label: tone, k: 4}")
    b = prompt_for(corpus, "{pool: pool.csv, label: tone, k: 4, seed: 7}")
    hashes = [(prompt_hash(a.render(r, item_id=r["id"]), None), prompt_hash(b.render(r, item_id=r["id"]), None))
              for r in rows]
    assert all(x != y for x, y in hashes)


@pytest.mark.parametrize(("demos", "error", "message"), [
    ("{pool: missing.csv, label: tone}", DataError, r"demonstrations pool .*missing\.csv does not exist; fix: give"),
    ("{pool: pool.csv, label: mood}", DataError, r"pool\.csv lacks column 'mood'.*; fix: give the pool"),
    ("{pool: pool.csv, label: tone, text_fields: [body]}", DataError, r"lacks column 'body'"),
    ("{pool: pool.csv, label: id}", DataError, r"pool\.csv row 1: label 'p0' in column 'id' is not one of pos"),
    ("{pool: pool.csv, label: tone, k: 0}", TaskError, r"demonstrations: k must be a whole number from 1 to 64"),
    ("{pool: pool.csv, label: tone, select: best}", TaskError, r"demonstrations: select must be stratified or similar"),
    ("{pool: pool.csv}", TaskError, r"demonstrations: label is missing: give the pool's gold label column"),
    ("{pool: pool.csv, label: tone, size: 3}", TaskError, r"demonstrations: unknown key 'size'"),
    ("pool.csv", TaskError, r"demonstrations: must be a mapping: demonstrations: \{pool: PATH"),
    ("{pool: pool.csv, label: tone, embedding_model: text-embedding-3-small}", TaskError,
     r"embedding_model is used by select: similar only"),
])
def test_bad_pool_config_gives_a_one_line_error(corpus, demos, error, message):
    with pytest.raises(error, match=message) as caught:
        prompt_for(corpus, demos).render(data_rows(corpus)[0], item_id="d0")
    assert "\n" not in str(caught.value) and "fix: " in str(caught.value)


def test_a_template_that_never_shows_its_demonstrations_is_refused(corpus):
    task = parse_task_text("---\nlabels: [pos, neg]\ndemonstrations: {pool: pool.csv, label: tone}\n---\n{{ text }}\n",
                           "plain.jinja")
    with pytest.raises(TemplateError, match="demonstrations are declared but the template never shows them"):
        compile_prompt(task)


def test_with_demonstrations_revalidates(corpus):
    task = load_task(write_task(corpus, "{pool: pool.csv, label: tone}"))
    similar = task.with_demonstrations(select="similar", k=2)
    assert similar.demonstrations.select == "similar" and similar.template_hash != task.template_hash
    assert task.with_demonstrations(None).demonstrations is None
    with pytest.raises(TaskError, match="k must be a whole number"):
        task.with_demonstrations(k=-1)
    # tasks without demonstrations keep their template hash (run directories of old jobs stay theirs)
    assert "demonstrations" not in load_task("emotion_melt").model_dump(exclude_none=True)


@pytest.mark.shared_data
def test_emotion_melt_demos_reads_meld_train_beside_the_data(shared_data):
    dev_path = shared_data / "meld" / "dev_sent_emo.csv"
    prompt = compile_prompt(load_task("emotion_melt_demos"), default_root(dev_path, None))
    dev = pd.read_csv(dev_path).head(3).to_dict("records")
    for row in dev:
        ids = prompt.demonstrations_of(row, str(row["Sr No."]))
        assert len(ids) == 4 and len(set(ids)) == 4
        text = prompt.render(row, item_id=str(row["Sr No."]))[-1]["content"]
        assert text.count("Emotion: ") == 4 and text.endswith(f'said: "{row["Utterance"]}"')
        assert len({line for line in text.splitlines() if line.startswith("Emotion: ")}) == 4
    # with no demonstrations the prompt is emotion_melt's, word for word
    plain = compile_prompt(load_task("emotion_melt_demos").with_demonstrations(None))
    assert plain.render(dev[0], item_id="1") == compile_prompt(load_task("emotion_melt")).render(dev[0], item_id="1")


def test_similar_by_embeddings_through_litellm_on_loopback(corpus, fake_server):
    from llm_annotator.providers.embeddings import embedder

    server = fake_server()
    demos = "{pool: pool.csv, label: tone, id_column: id, k: 3, select: similar, embedding_model: openai/bow}"
    task = load_task(write_task(corpus, demos))
    with pytest.raises(ConfigError, match=r"embedding_model 'openai/bow' needs an embedding function.*; fix: pass"):
        compile_prompt(task, corpus).demonstrations_of({"text": "x"}, "q")
    embed = embedder("openai/bow", api_base=server.url, api_key="sk-test")
    prompt = compile_prompt(task, corpus, embed=embed)
    texts = {r["id"]: r["text"] for r in pool_rows()}
    chosen = prompt.demonstrations_of({"text": "tiger cloud number 13"}, "q")
    assert chosen[-1] == "p13" and all("tiger" in texts[i] or "cloud" in texts[i] for i in chosen)
    assert prompt.demonstrations_of({"text": "tiger cloud number 13"}, "q") == chosen  # cached: no request
    # the pool is embedded once (one request of 40 texts), then one request per item
    assert [len(r["input"]) for r in server.embedding_requests] == [40, 1]
    assert {r["model"] for r in server.embedding_requests} == {"bow"}
    assert "p13" not in prompt.demonstrations_of({"text": texts["p13"]}, "q2")
