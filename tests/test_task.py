import pytest

from llm_annotator.core.errors import TaskError, TemplateError
from llm_annotator.core.task import builtin_names, load_task, parse_task_text


def test_builtin_tasks_load_with_their_label_sets():
    assert set(builtin_names()) >= {"emotion_melt", "emotion_context", "sentiment", "classification"}
    melt = load_task("emotion_melt")
    assert melt.labels == ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
    assert melt.output == "elements.emotion"
    assert load_task("emotion_context").context_window == 3
    assert load_task("sentiment").labels == ("positive", "negative", "neutral")


def test_classification_needs_the_callers_labels():
    with pytest.raises(TaskError, match=r"has no label set.*--labels"):
        load_task("classification")
    task = load_task("classification", labels=["spam", "ham"])
    assert task.labels == ("spam", "ham")


@pytest.mark.parametrize(("labels", "message"), [
    (["a", "A"], "lists 'A' twice"),
    (["a", ""], "empty label"),
])
def test_bad_label_sets_are_refused(labels, message):
    with pytest.raises(TaskError, match=message):
        load_task("classification", labels=labels)


def test_unknown_task_lists_the_builtins():
    with pytest.raises(TemplateError, match=r"unknown task 'emotoin'.*emotion_melt"):
        load_task("emotoin")


def test_front_matter_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.jinja"
    bad.write_text("---\nlabels: [a, b\n---\n{{ text }}\n")
    with pytest.raises(TemplateError, match=r"bad.jinja.*not valid YAML"):
        load_task(bad)
    unclosed = tmp_path / "unclosed.jinja"
    unclosed.write_text("---\nlabels: [a]\n{{ text }}\n")
    with pytest.raises(TemplateError, match="not closed"):
        load_task(unclosed)


def test_template_hash_changes_with_the_template_only():
    a = parse_task_text("---\nlabels: [x, y]\n---\nText: {{ text }}\n", "a.jinja")
    b = parse_task_text("---\nlabels: [x, y]\n---\nText: {{ text }}\n", "elsewhere/a.jinja")
    c = parse_task_text("---\nlabels: [x, y]\n---\nSentence: {{ text }}\n", "a.jinja")
    assert a.template_hash == b.template_hash != c.template_hash


def test_response_schema_has_the_labels_as_an_enum_at_the_output_path():
    schema = load_task("emotion_melt").response_schema()
    root = schema["json_schema"]["schema"]
    emotion = root["properties"]["elements"]["properties"]["emotion"]
    assert emotion["enum"][0] == "neutral" and len(emotion["enum"]) == 7
    assert set(root["required"]) == {"character", "context", "elements"}
    assert root["properties"]["elements"]["additionalProperties"] is False
