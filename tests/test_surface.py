"""The public surface: a pinned, sorted ``__all__``, a documented ``annotate``, and README
examples that run as written."""

import re
import shutil
from pathlib import Path

import llm_annotator
from llm_annotator.testing import sampling_responder

ROOT = Path(__file__).resolve().parent.parent


def test_exported_members_are_pinned_and_sorted():
    assert llm_annotator.__all__ == sorted(llm_annotator.__all__)
    assert llm_annotator.__all__ == [
        "AnnotationResult", "AnnotatorError", "AnswerCache", "ConfigError", "DataError", "ModelError",
        "ModelSpec", "RunDirError", "RunWarning", "StreamedRun", "Task", "TaskError", "TemplateError", "annotate",
        "annotate_async", "annotate_stream", "annotate_stream_async", "collect", "load_task", "plan"]
    for name in llm_annotator.__all__:
        assert getattr(llm_annotator, name) is not None


def test_help_of_annotate_explains_every_option():
    import inspect

    doc = inspect.getdoc(llm_annotator.annotate) or ""
    options = [p for p in inspect.signature(llm_annotator.annotate).parameters]
    undocumented = [p for p in options if not re.search(rf"^\s*{p}:", doc, re.M)]
    assert not undocumented, f"help(annotate) does not explain {undocumented}"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def test_readme_python_examples_run(fake_server, tmp_path, monkeypatch):
    """Every Python block of the README, against a loopback server standing in for OpenAI."""
    server = fake_server(sampling_responder(["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"],
                                           "elements.emotion"))
    monkeypatch.setenv("OPENAI_API_BASE", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-readme-example")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    shutil.copy(ROOT / "examples" / "data" / "walnut_street.csv", tmp_path / "dialogues.csv")
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(ROOT / "README.md")
    assert blocks
    for block in blocks:
        namespace: dict[str, object] = {}
        exec(compile(block, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert len(result.votes) > 0 and result.votes["label"].notna().any()  # type: ignore[attr-defined]
    assert server.calls > 0
    assert (tmp_path / "runs" / "friends" / "run.json").is_file()
