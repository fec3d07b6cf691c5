"""Any answer text becomes a label of the set or an invalid-answer kind: never an exception,
never a label outside the set, never another label than the one written."""

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from llm_annotator.core.errors import ErrorKind
from llm_annotator.core.parse import parse_answer
from llm_annotator.core.task import Task, load_task

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Labels as people write them: words, cased words, several words, punctuation, non-Latin scripts.
LABEL = st.one_of(
    st.sampled_from(["joy", "Joy Ful", "not sure", "?", "a.", "n/a", "😀", "неясно", "答え", "x-y", "Answer"]),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=12).filter(lambda s: s.strip()),
)
LABEL_SETS = st.lists(LABEL, min_size=1, max_size=6, unique_by=lambda s: s.strip().casefold())
OUTPUT = st.sampled_from([None, "label", "sentiment", "elements.emotion"])


def task(labels, output):
    return Task(name="fuzz", labels=tuple(labels), template="{{ text }}", output=output)


def answers(labels):
    """Answer texts: arbitrary text, the labels themselves and decorated, JSON around them."""
    label = st.sampled_from([x.strip() for x in labels])
    decorated = st.builds(lambda pre, x, post: f"{pre}{x}{post}", st.sampled_from(["", " ", "Answer: ", "**", '"']),
                          label, st.sampled_from(["", ".", "!", "\n because", '"', " "]))
    as_json = st.builds(lambda key, x: json.dumps({key: x}), st.sampled_from(["label", "answer", "sentiment", "x"]),
                        st.one_of(label, st.text(max_size=8), st.integers(), st.none(), st.lists(label, max_size=2)))
    nested = st.builds(lambda x: json.dumps({"elements": {"emotion": x}}), st.one_of(label, st.text(max_size=8)))
    return st.one_of(st.text(max_size=60), st.text(st.characters(codec="utf-8"), max_size=60), decorated,
                     as_json, nested, st.binary(max_size=40).map(lambda b: b.decode("utf-8", "replace")))


def check(parsed, the_task):
    if parsed.label is not None:
        assert parsed.label in the_task.labels and parsed.error is None
    else:
        kind = ErrorKind.of(parsed.error)
        assert kind is not None and kind.invalid_answer, parsed.error


@FUZZ
@given(data=st.data(), labels=LABEL_SETS, output=OUTPUT)
def test_any_answer_is_a_label_of_the_set_or_an_invalid_kind(data, labels, output):
    the_task = task(labels, output)
    content = data.draw(answers(labels))
    check(parse_answer(content, the_task), the_task)


@FUZZ
@given(labels=LABEL_SETS, output=OUTPUT, data=st.data())
def test_a_label_written_exactly_is_read_as_that_label(labels, output, data):
    the_task = task(labels, output)
    label = data.draw(st.sampled_from(the_task.labels))  # as the task keeps it: stripped
    if output is None:
        content = label
    else:
        obj = label
        for part in reversed(output.split(".")):
            obj = {part: obj}
        content = json.dumps(obj, ensure_ascii=data.draw(st.booleans()))
    parsed = parse_answer(content, the_task)
    if not any(c in label for c in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"):
        assert (parsed.label, parsed.error) == (label, None)
    else:  # a label holding a line break cannot be written as a one-line bare answer
        check(parsed, the_task)


HOSTILE = {
    "5000-digit int": '{"label": ' + "1" * 5000 + "}",  # more digits than Python converts to an int
    "deep array": "[" * 100_000,                        # deeper than the JSON decoder recurses
    "deep value": '{"label": ' + "[" * 100_000 + "}",
    "deep fenced": '```json\n{"label": ' + "{" * 50_000 + "\n```",
    "surrogate in braces": "{\ud800}",                   # lone surrogates, as a JSON decoder gives them
    "surrogate value": '{"label": "\ud800"}',
    "surrogate": "\ud800",
    "NUL": "\x00",
    "empty braces": "{" * 3 + "}" * 3,
    "NaN value": '{"label": NaN}',
    "infinite value": '{"label": 1e999}',
}


@pytest.mark.parametrize("content", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_answers_are_invalid_votes_not_exceptions(content):
    the_task = task(["joy", "anger"], "label")
    parsed = parse_answer(content, the_task)
    assert parsed.label is None
    check(parsed, the_task)


@pytest.mark.parametrize(("labels", "content", "label"), [
    (["a", "a."], "a.", "a."),         # an exact answer is never read as a label its punctuation hides
    (["a", "a."], "a", "a"),
    (["?", "yes"], "?", "?"),
    (["Answer", "other"], "Answer", "Answer"),   # a label that looks like an "Answer:" prefix
    (["Answer", "other"], "Answer: other", "other"),
])
def test_exact_answers_win_over_tolerant_matching(labels, content, label):
    assert parse_answer(content, task(labels, None)).label == label


@pytest.mark.parametrize(("labels", "content"), [
    (["?", "yes"], "!!!"),            # punctuation alone is not the label "?"
    (["?", "yes"], "."),
    (["a", "a."], "A!"),              # tolerant matching that fits two labels picks neither
])
def test_tolerant_matching_never_guesses(labels, content):
    parsed = parse_answer(content, task(labels, None))
    assert parsed.label is None and ErrorKind.of(parsed.error).invalid_answer


@example(content="Sure!\n```json\n{\"elements\": {\"Emotion\": \"Surprise\"}}\n```")
@FUZZ
@given(content=st.text(max_size=80))
def test_builtin_task_never_raises(content):
    melt = load_task("emotion_melt")
    check(parse_answer(content, melt), melt)
