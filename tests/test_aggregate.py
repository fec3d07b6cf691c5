import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation import DawidSkene

from llm_annotator.analysis import aggregate
from llm_annotator.analysis.dawid_skene import dawid_skene
from llm_annotator.core.task import Task
from llm_annotator.core.votes import Vote, votes_frame
from llm_annotator.outputs.result import AnnotationResult

LABELS = ("pos", "neg", "neu")
TASK = Task(name="t", labels=LABELS, template="{{ text }}")


def vote(item, annotator, sample, label, distribution=None):
    return Vote(item_id=item, annotator=annotator, sample_index=sample, label=label,
                error=None if label else "unparseable", raw=label, distribution=distribution, model=annotator,
                prompt_hash="p", template_hash="t")


def result_of(votes, items, samples, annotators):
    frame = pd.DataFrame({"item_id": items, "text": items})
    return AnnotationResult(votes_frame(votes), TASK, frame, samples=samples, annotators=annotators)


def synthetic(seed=0, n_items=300):
    rng = np.random.default_rng(seed)
    truth = rng.choice(LABELS, n_items, p=[0.5, 0.3, 0.2])
    accuracy = {"good": 0.85, "fair": 0.65, "poor": 0.45}
    votes = []
    for i, true in enumerate(truth):
        for name, acc in accuracy.items():
            for s in range(3):
                if rng.random() < 0.1:
                    votes.append(vote(f"i{i}", name, s, None))  # invalid answer: missing data
                    continue
                label = true if rng.random() < acc else rng.choice([x for x in LABELS if x != true])
                votes.append(vote(f"i{i}", name, s, str(label)))
    return votes, [f"i{i}" for i in range(n_items)], truth


def test_dawid_skene_matches_crowd_kit():
    votes, items, _truth = synthetic()
    frame = votes_frame(votes)
    valid = frame[frame["label"].notna()]
    data = pd.DataFrame({"task": valid["item_id"], "worker": valid["annotator"] + "#" + valid["sample_index"].astype(str),
                         "label": valid["label"]})
    reference = DawidSkene(n_iter=100).fit(data)
    result = result_of(votes, items, 3, ["good", "fair", "poor"])
    ours = result.dawid_skene(per_sample=True)
    probas = reference.probas_.reindex(index=ours.items, columns=list(LABELS)).to_numpy()
    assert np.abs(probas - ours.posteriors).max() < 1e-6
    assert ours.elbo == pytest.approx(reference.loss_history_)
    # annotator confusion matrices: P(answer | true), columns sum to one
    good = ours.confusion_frame("good#0")
    assert good.sum(axis=0).to_numpy() == pytest.approx(np.ones(3))
    assert np.diag(good.to_numpy()).mean() > np.diag(ours.confusion_frame("poor#0").to_numpy()).mean()


def test_dawid_skene_beats_the_poor_annotator_and_feeds_labels():
    votes, items, truth = synthetic(seed=1)
    result = result_of(votes, items, 3, ["good", "fair", "poor"])
    ds = result.labels(method="dawid_skene")
    assert (ds["label"].to_numpy() == truth).mean() > 0.9
    assert ds["confidence"].between(0, 1).all()


def test_soft_labels_mix_distributions_and_one_hot_votes():
    votes = [vote("x", "m", 0, "pos", {"pos": 0.6, "neg": 0.3, "neu": 0.1}),
             vote("x", "m", 1, "neg"),
             vote("x", "m", 2, None),
             vote("x", "h", 0, "neu")]
    result = result_of(votes, ["x"], 3, ["m", "h"])
    per = result.soft_labels(by_annotator=True)
    assert per.loc[("x", "m"), list(LABELS)].tolist() == pytest.approx([0.3, 0.65, 0.05])
    assert per.loc[("x", "m"), "n_valid"] == 2 and per.loc[("x", "m"), "n_votes"] == 3
    combined = result.soft_labels().loc["x"].tolist()
    assert combined == pytest.approx([0.15, 0.325, 0.525])
    row = result.labels().iloc[0]
    assert row["label"] == "neu" and row["n_valid"] == 3 and row["n_requested"] == 6
    assert row["margin"] == pytest.approx(0.525 - 0.325)
    smooth = result.soft_labels(by_annotator=True, smoothing=1.0)
    assert smooth.loc[("x", "h"), list(LABELS)].tolist() == pytest.approx([0.25, 0.25, 0.5])


def test_ties_go_to_the_label_listed_first():
    votes = [vote("x", "m", 0, "neg"), vote("x", "m", 1, "pos")]
    result = result_of(votes, ["x"], 2, ["m"])
    assert result.labels()["label"].iloc[0] == "pos"
    assert result.labels(method="majority")["label"].iloc[0] == "pos"


def test_confidence_measures():
    probs = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.3, 0.2]])
    conf = aggregate.confidence(probs)
    assert conf["confidence"].tolist() == pytest.approx([1.0, 1 / 3, 0.5])
    assert conf["margin"].tolist() == pytest.approx([1.0, 0.0, 0.2])
    entropy = -(0.5 * np.log(0.5) + 0.3 * np.log(0.3) + 0.2 * np.log(0.2))
    assert conf["entropy_confidence"].tolist() == pytest.approx([1.0, 0.0, 1 - entropy / np.log(3)])


def test_dawid_skene_direct_call_keeps_item_order():
    fit = dawid_skene(["b", "a"], ["w", "w"], ["pos", "neg"], list(LABELS), item_order=["a", "b"])
    assert fit.items == ["a", "b"] and fit.posteriors.shape == (2, 3)


def test_in_memory_frames_and_streamed_chunk_sums_give_the_same_soft_labels(tmp_path):
    """The two paths share one rule per vote (vote_vector) and one across annotators
    (combine_soft): on votes with and without distributions, invalid votes, and items
    no annotator labelled, they agree."""
    from llm_annotator.outputs.labels import sum_votes
    from llm_annotator.store.item_index import ItemIndex

    rng = np.random.default_rng(3)
    labels, task = list(LABELS), TASK
    items, annotators, votes = [f"i{n}" for n in range(30)], ["m1", "m2", "m3"], []
    for n, item in enumerate(items):
        for a in annotators:
            for s in range(3):
                roll = rng.random()
                if n == 7 or roll < 0.15:  # item i7 has no valid vote at all
                    votes.append(vote(item, a, s, None))
                elif roll < 0.6:
                    dist = dict(zip(labels, rng.dirichlet([1, 1, 1]) * rng.choice([1.0, 3.0]), strict=True))
                    votes.append(vote(item, a, s, max(dist, key=dist.get), dist))
                else:
                    votes.append(vote(item, a, s, str(rng.choice(labels))))
    memory = result_of(votes, items, 3, annotators).soft_labels()
    path = tmp_path / "votes.jsonl"
    path.write_text("".join(v.to_json() + "\n" for v in votes))
    index = ItemIndex("votes", "id", 1)
    index.assign([{"id": item} for item in items], 0)
    probs = sum_votes(path, index, task, annotators).at(range(len(items)))[task.primary.name].probs
    index.close()
    np.testing.assert_allclose(probs, memory[labels].to_numpy(), equal_nan=True)
    assert np.isnan(probs[7]).all()
