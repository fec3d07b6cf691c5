import math

import pytest

from llm_annotator.core.parse import distribution_from_logprobs, parse_answer
from llm_annotator.core.task import load_task

MELT = load_task("emotion_melt")
SENT = load_task("sentiment")


@pytest.mark.parametrize(("answer", "label"), [
    ('{"character": "Joey", "context": "x", "elements": {"emotion": "joy", "pitch": "high"}}', "joy"),
    ('Sure!\n```json\n{"elements": {"Emotion": "Surprise"}}\n```', "surprise"),
    ('{"elements": {"emotion": "happy"}}', "joy"),  # declared alias
    ("Anger.", "anger"),
    ("Emotion: sadness", "sadness"),
])
def test_valid_answers(answer, label):
    parsed = parse_answer(answer, MELT)
    assert (parsed.label, parsed.error) == (label, None)


@pytest.mark.parametrize(("answer", "error"), [
    ('{"elements": {"emotion": "frustration"}}', "out_of_label_set:frustration"),
    ('{"elements": {"emotion": "comfort"}}', "out_of_label_set:comfort"),
    ('{"character": "Joey"}', "missing_field:elements.emotion"),
    ('{"elements": {"emotion": "joy', "unparseable"),
    ("", "empty"),
    (None, "empty"),
    ("I think it is probably joy or maybe surprise, hard to say", "unparseable"),
    ('{"elements": {"emotion": ["joy"]}}', 'out_of_label_set:["joy"]'),
])
def test_invalid_answers_keep_their_reason_and_are_never_coerced(answer, error):
    parsed = parse_answer(answer, MELT)
    assert parsed.label is None
    assert parsed.error == error


def test_logprobs_at_the_label_token_become_a_distribution():
    content = '{"context": "a joyful day", "sentiment": "positive"}'
    tokens = [{"token": t, "logprob": 0.0, "top_logprobs": []} for t in
              ['{"', "context", '":', ' "', "a", " joy", "ful", " day", '",', ' "', "sentiment", '":', ' "']]
    tokens.append({"token": "pos", "logprob": math.log(0.6), "top_logprobs": [
        {"token": "pos", "logprob": math.log(0.6)}, {"token": "neg", "logprob": math.log(0.3)},
        {"token": "banana", "logprob": math.log(0.1)}]})
    tokens += [{"token": "itive", "logprob": 0.0}, {"token": '"}', "logprob": 0.0}]
    parsed = parse_answer(content, SENT)
    dist = distribution_from_logprobs(content, tokens, parsed, SENT)
    assert dist == pytest.approx({"positive": 0.6 / 0.9, "negative": 0.3 / 0.9, "neutral": 0.0})


def test_no_distribution_without_a_valid_label():
    parsed = parse_answer('{"sentiment": "meh"}', SENT)
    assert distribution_from_logprobs('{"sentiment": "meh"}', [{"token": "meh", "logprob": 0}], parsed, SENT) is None
