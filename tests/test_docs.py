from pathlib import Path

from llm_annotator.cli import reference_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_cli_reference_is_generated_from_the_cli():
    assert (ROOT / "docs" / "cli.md").read_text() == reference_markdown(), (
        "docs/cli.md is stale: run python -m llm_annotator.cli --markdown > docs/cli.md")


def test_every_environment_variable_read_by_the_library_is_documented():
    import re

    names = set()
    for path in (ROOT / "llm_annotator").rglob("*.py"):
        names |= set(re.findall(r"environ(?:\.get)?\(\s*\"([A-Z_]+)\"", path.read_text()))
        names |= set(re.findall(r"environ\[\"([A-Z_]+)\"\]", path.read_text()))
    settings = (ROOT / "docs" / "settings.md").read_text()
    missing = sorted(n for n in names if f"`{n}`" not in settings)
    assert names and not missing, missing
