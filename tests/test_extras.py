"""What each feature needs is declared: core imports in the core dependencies, optional
features behind an extra that their one-line error names."""

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
#: the distribution of an import name, where the two differ
DISTRIBUTION = {"ppi_py": "ppi-python", "yaml": "pyyaml", "llama_cpp": "llama-cpp-python", "sklearn": "scikit-learn"}
#: packages only some features need, and the extra that installs them
OPTIONAL = {"matplotlib": "report", "datasets": "hf", "llama_cpp": "local", "scipy": "trust", "sklearn": "trust",
            "ppi_py": "trust", "ray": "ray"}


def requirement_names(requirements):
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() for r in requirements}


def third_party_imports():
    """(module, file, at module level?) for every import of another distribution."""
    found = []
    for path in sorted((ROOT / "llm_annotator").rglob("*.py")):
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                if root not in sys.stdlib_module_names and root != "llm_annotator":
                    found.append((root, path.relative_to(ROOT).as_posix(), id(node) in top))
    return found


def test_every_package_the_library_imports_is_declared():
    core = requirement_names(PROJECT["dependencies"])
    extras = {name: requirement_names(reqs) for name, reqs in PROJECT["optional-dependencies"].items()}
    imports = third_party_imports()
    assert {"krippendorff", "pandas", "litellm"} <= {m for m, _, _ in imports}
    for module, path, module_level in imports:
        distribution = DISTRIBUTION.get(module, module).replace("_", "-")
        if module in OPTIONAL:
            assert distribution in extras[OPTIONAL[module]], (module, path)
            assert not module_level, f"{path} imports {module} at import time: the {OPTIONAL[module]} extra " \
                                     "would be needed by every user"
        else:
            assert distribution in core, f"{path} imports {module}, which is not a core dependency"


def test_krippendorff_is_a_core_dependency_with_its_bounds():
    assert "krippendorff>=0.6,<1" in PROJECT["dependencies"]
    assert not any(r.startswith("krippendorff") for r in PROJECT["optional-dependencies"]["dev"])


def run_without(module, script, *args):
    """Run ``python -m examples.ser.SCRIPT ARGS`` as if ``module`` were not installed."""
    code = (f"import runpy, sys; sys.modules[{module!r}] = None; sys.argv = ['{script}', *{list(args)!r}]; "
            f"runpy.run_module('examples.ser.{script}', run_name='__main__', alter_sys=True)")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("script", ["train", "evaluate", "baseline", "melt_experiment"])
def test_an_ser_script_without_torch_says_which_extra_in_one_line(script):
    proc = run_without("torch", script, "--help")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"examples.ser.{script}: error: the SER example needs torch, which is not installed; "
        "fix: pip install -c constraints.txt -e '.[ser]' (the 'ser' extra, from the clone's root)"]


def test_the_emodb_soft_labels_need_no_extra():
    proc = run_without("torch", "emodb", "--help")
    assert proc.returncode == 0 and "--emodb-dir" in proc.stdout, proc.stderr


def test_an_ser_function_imported_as_a_library_raises_an_import_error_naming_the_extra(monkeypatch, tmp_path):
    from examples.ser.data import load_audio

    monkeypatch.setitem(sys.modules, "soundfile", None)
    with pytest.raises(ModuleNotFoundError, match=re.escape("needs soundfile")) as error:
        load_audio(tmp_path / "clip.wav")
    assert "'.[ser]'" in str(error.value) and error.value.name == "soundfile"
