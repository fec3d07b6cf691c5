import pytest

from llm_annotator.core.errors import DataError, TemplateError
from llm_annotator.core.prompts import compile_prompt, prompt_hash
from llm_annotator.core.task import load_task, parse_task_text

ROW = {"Speaker": "Joey", "Season": "3", "Episode": "5", "Utterance": "How you doin'?"}


def test_melt_prompt_uses_the_text_cues():
    messages = compile_prompt(load_task("emotion_melt")).render(ROW, item_id="x", where="t.csv row 1")
    assert messages[0]["role"] == "system"
    assert 'Joey at s3e5 said: "How you doin\'?"' in messages[1]["content"]
    assert "neutral, joy, surprise, anger, sadness, disgust, fear" in messages[1]["content"]


def test_context_prompt_lists_previous_turns():
    row = {**ROW, "context": [{"speaker": "Chandler", "utterance": "Could it BE any colder?"}]}
    text = compile_prompt(load_task("emotion_context")).render(row)[1]["content"]
    assert 'Chandler: "Could it BE any colder?"' in text
    assert text.index("Chandler") < text.index("Joey at s3e5")


def test_missing_field_names_field_and_row():
    prompt = compile_prompt(load_task("emotion_melt"))
    with pytest.raises(DataError, match=r"friends.csv row 7: .*needs field '(Speaker|Season|Episode|Utterance)'.*--map"):
        prompt.render({"text": "hi"}, where="friends.csv row 7")


def test_null_value_is_an_error_not_an_empty_string():
    prompt = compile_prompt(load_task("emotion_melt"))
    with pytest.raises(DataError, match=r"row 2 \(item abc\): field 'Utterance' is empty"):
        prompt.render({**ROW, "Utterance": None}, item_id="abc", where="d.csv row 2")


def test_data_values_are_text_never_template_code():
    task = load_task("sentiment")
    text = compile_prompt(task).render({"text": "{{ 7*7 }} {% for x in [1] %}loop{% endfor %}"})[1]["content"]
    assert "{{ 7*7 }}" in text and "{% for x in [1] %}" in text and "49" not in text


def test_sandbox_refuses_python_internals():
    task = parse_task_text("---\nlabels: [a, b]\n---\n{{ ''.__class__.__mro__ }}\n", "evil.jinja")
    with pytest.raises(TemplateError, match="refused by the sandbox"):
        compile_prompt(task).render({})


def test_syntax_error_names_the_line():
    task = parse_task_text("---\nlabels: [a, b]\n---\nline one\n{% if %}\n", "broken.jinja")
    with pytest.raises(TemplateError, match=r"broken.jinja \(body line 2\): Jinja syntax error"):
        compile_prompt(task)


def test_prompt_hash_covers_messages_and_schema():
    m = [{"role": "user", "content": "x"}]
    assert prompt_hash(m, None) == prompt_hash(list(m), None)
    assert prompt_hash(m, None) != prompt_hash(m, {"type": "json_object"})
    assert prompt_hash(m, None) != prompt_hash([{"role": "user", "content": "y"}], None)
