"""`iclrec_tf.files`: atomic writes and one permission policy, whatever the writer."""

import os
import tempfile

import pytest

from iclrec_tf import files


@pytest.fixture
def umask():
    """Runs the test under the umask it sets through the returned function, then restores."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def _mode(path):
    return path.stat().st_mode & 0o777


@pytest.mark.parametrize(("mask", "file_mode", "directory_mode"),
                         [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750), (0o077, 0o600, 0o700)])
def test_files_and_directories_follow_the_umask(tmp_path, umask, mask, file_mode,
                                                directory_mode):
    umask(mask)
    files.write_text(tmp_path / "a.txt", "text")
    with files.StagedDirectory(tmp_path, "out") as staged:
        (staged.path / "inner").mkdir()
        (staged.path / "inner" / "f").write_text("x")
        staged.publish(tmp_path / "out")
    assert _mode(tmp_path / "a.txt") == file_mode
    assert {_mode(tmp_path / "out"), _mode(tmp_path / "out" / "inner")} == {directory_mode}
    assert _mode(tmp_path / "out" / "inner" / "f") == file_mode


def test_a_tree_written_with_private_modes_is_published_readable(tmp_path, umask):
    # tempfile's 0700 directories and 0600 files, as TensorFlow or tempfile leave them.
    with files.StagedDirectory(tmp_path, "weights") as staged:
        private = tempfile.mkdtemp(dir=staged.path)
        handle, secret = tempfile.mkstemp(dir=private)
        os.close(handle)
        staged.publish(tmp_path / "weights")
    published = tmp_path / "weights" / os.path.basename(private)
    assert _mode(published) == 0o755
    assert _mode(published / os.path.basename(secret)) == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "history.csv"
    files.write_text(path, "old\n")
    with pytest.raises(RuntimeError), files.atomic_file(path) as stream:
        stream.write("half of the new")
        raise RuntimeError("killed")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv"]


def test_publish_replaces_only_when_asked(tmp_path):
    final = tmp_path / "weights"
    final.mkdir()
    (final / "old").write_text("old")
    with files.StagedDirectory(tmp_path, "weights") as staged:
        (staged.path / "new").write_text("new")
        with pytest.raises(FileExistsError):
            staged.publish(final)
        staged.publish(final, replace=True)
    assert sorted(p.name for p in final.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights"]  # nothing retired left


def test_an_unpublished_staging_directory_is_removed(tmp_path):
    with pytest.raises(KeyError), files.StagedDirectory(tmp_path, "export") as staged:
        (staged.path / "partial").write_text("x")
        raise KeyError("failed half-way")
    assert list(tmp_path.iterdir()) == []
    # A killed process cannot remove it; the leftover is found by name.
    leftover = files.StagedDirectory(tmp_path, "shop").path
    assert files.staging_leftovers(tmp_path, "shop") == [leftover]
    assert files.staging_leftovers(tmp_path, "other") == []
