"""Writers: every file whole or not at all; labels.csv and labels.jsonl hold what the result holds."""

import errno
import os

import pytest

from llm_annotator.core.errors import RunDirError
from llm_annotator.store import files as files_module
from llm_annotator.store.files import write_atomic


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


class Boom(Exception):
    pass


@pytest.mark.parametrize("failure", [TypeError("Object of type date is not JSON serializable"), KeyboardInterrupt(),
                                     SystemExit(3), Boom("a serializer's own error"), MemoryError()],
                         ids=lambda e: type(e).__name__)
def test_a_writer_that_fails_in_any_way_leaves_the_old_file_and_no_temporary_file(tmp_path, failure):
    path = tmp_path / "labels.jsonl"
    path.write_text("old\n")

    def write(out):
        out.write("half a line")
        raise failure

    with pytest.raises(type(failure)):
        write_atomic(path, write)
    assert path.read_text() == "old\n"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_a_full_disk_at_any_step_is_one_clear_error_and_no_temporary_file(tmp_path, monkeypatch, step):
    path = tmp_path / "run.json"
    path.write_text("{}")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files_module.os, step, full)
    with pytest.raises(RunDirError, match=r"cannot write .*run\.json: No space left on device; fix: free disk space"):
        write_atomic(path, "{\"status\": \"complete\"}")
    monkeypatch.undo()
    assert path.read_text() == "{}" and leftovers(tmp_path) == []


@pytest.mark.parametrize("failure", [TypeError("not serializable"), OSError(errno.ENOSPC, "No space left on device")],
                         ids=["TypeError", "ENOSPC"])
def test_a_removal_that_fails_too_does_not_hide_the_first_error(tmp_path, monkeypatch, failure):
    path = tmp_path / "labels.csv"
    real_unlink = type(path).unlink
    calls = []

    def refused_unlink(self, missing_ok=False):
        calls.append(self.name)
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(type(path), "unlink", refused_unlink)

    def write(out):
        raise failure

    expected = RunDirError if isinstance(failure, OSError) else TypeError
    with pytest.raises(expected, match=r"No space left on device|not serializable"):
        write_atomic(path, write)
    monkeypatch.undo()
    assert calls and not path.exists()
    for name in leftovers(tmp_path):
        real_unlink(tmp_path / name)


def test_files_get_the_usual_mode(tmp_path):
    write_atomic(tmp_path / "a.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask
