import functools
import hashlib
import http.server
import shutil
import threading

import numpy as np
import pytest
from conftest import write_dataset

from iclrec_tf.data import datasets as data_module
from iclrec_tf.data.datasets import load_sequences, resolve_dataset
from iclrec_tf.data.windows import last_window
from iclrec_tf.errors import DataError


def test_parses_users_items_and_vocabulary(tmp_path):
    path = write_dataset(tmp_path / "d.txt", [[3, 1, 4, 1, 5], [9, 2, 6, 5]], first_user=7)
    data = load_sequences(path)
    assert data.user_ids.tolist() == [7, 8]
    assert data.lengths.tolist() == [5, 4]
    assert data.sequence(1).tolist() == [9, 2, 6, 5]
    # item_size = max item + 2: 0 is padding, max + 1 the mask id.
    assert (data.max_item, data.item_size, data.mask_id) == (9, 11, 10)


def test_a_subset_keeps_the_first_users_and_their_largest_item(tmp_path):
    data = load_sequences(write_dataset(tmp_path / "d.txt", [[1, 2, 3, 4], [9, 5, 6, 7],
                                                              [2, 3, 4, 12]]))
    first_two = data.subset(2)
    assert first_two.user_ids.tolist() == [1, 2]
    assert first_two.sequence(1).tolist() == [9, 5, 6, 7]
    assert first_two.max_item == 9
    # 0 (the --max-users default) and more users than there are both mean all of them.
    assert data.subset(0) is data and data.subset(3) is data and data.subset(50) is data


def test_leave_one_out_splits(tmp_path):
    data = load_sequences(write_dataset(tmp_path / "d.txt", [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10]]))
    assert data.answers("test").tolist() == [6, 10]
    assert data.answers("valid").tolist() == [5, 9]
    values, splits = data.prefixes(drop_last=3)  # train inputs items[:-3]
    assert values.tolist() == [1, 2, 3, 7] and splits.tolist() == [0, 3, 4]
    values, splits = data.prefixes(drop_last=1)  # test inputs items[:-1]
    assert values.tolist() == [1, 2, 3, 4, 5, 7, 8, 9] and splits.tolist() == [0, 5, 8]


def test_last_window_keeps_the_most_recent_items_left_padded():
    items = np.arange(1, 13)  # user 0: 1..9, user 1: 10..12
    splits = np.array([0, 9, 12])
    windows = last_window(items, splits[:-1], ends=np.array([8, 11]), max_len=4)
    # user 0 ends before item 9 (exclusive end 8): ..., 5, 6, 7, 8; user 1 has 10, 11 only.
    assert windows.tolist() == [[5, 6, 7, 8], [0, 0, 10, 11]]
    # a later start cuts the window short: user 1 from its second item on
    shifted = last_window(items, splits[:-1] + 1, ends=np.array([8, 11]), max_len=4)
    assert shifted.tolist() == [[5, 6, 7, 8], [0, 0, 0, 11]]


def test_toys_matches_the_reference_statistics(toys):
    assert toys.num_users == 19412
    assert toys.max_item == 11924
    assert len(toys.items) == 167597
    assert toys.lengths.max() == 550
    assert round(float(toys.lengths.mean()), 2) == 8.63


@pytest.mark.parametrize("content,expected", [
    (b"", ": empty file"),
    (b"\n\n", ": empty file"),
    (b"1 1 2 3 4\n\n2 1 2 3 4\n", ":2: blank line"),
    (b"1 1 2 3 4\n2 1 x 3 4\n", ":2: 'x' is not an integer"),
    (b"1 1 2 3 4\n2 1 2.5 3 4\n", ":2: '2.5' is not an integer"),
    (b"1 1 0 3 4\n", ":1: item id 0 is below 1"),
    (b"1 1 -2 3 4\n", ":1: item id -2 is below 1"),
    (b"1 1 2 3 99999999999999999999\n", ":1: id 99999999999999999999 does not fit in int64"),
    (b"1 1 2 3\n", ":1: user 1 has 3 items, leave-one-out needs at least 4"),
    (b"1 1 2 3 4\n2 5 6 7 8\n1 9 10 11 12\n", ":3: user 1 already appeared on line 1"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ": binary content"),
    (b"1 1 2 3 4\n2 \xff\xfe 3 4 5\n", ":2: not UTF-8 text"),
])
def test_malformed_files_are_refused_with_file_and_line(tmp_path, content, expected):
    path = tmp_path / "d.txt"
    path.write_bytes(content)
    with pytest.raises(DataError) as error:
        load_sequences(path)
    message = str(error.value)
    assert message.startswith(f"{path}{expected}")
    assert "\n" not in message


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        load_sequences(tmp_path / "absent.txt")


def _fake_toys(folder, content=b"1 1 2 3 4\n"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "Toys_and_Games.txt"
    path.write_bytes(content)
    return path


@pytest.fixture
def fake_toys_spec(monkeypatch):
    """Registers the sha256 of a small stand-in for the Toys file."""
    content = b"1 1 2 3 4\n2 2 3 4 5\n"
    spec = data_module.DatasetSpec("Toys_and_Games.txt", hashlib.sha256(content).hexdigest())
    monkeypatch.setitem(data_module.DATASETS, "toys", spec)
    monkeypatch.delenv(data_module.DATA_DIR_ENV, raising=False)
    return content


def test_lookup_order_data_dir_then_env_then_keras_cache(tmp_path, monkeypatch, fake_toys_spec):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    cached = _fake_toys(tmp_path / "keras" / "datasets", fake_toys_spec)
    assert resolve_dataset("toys") == cached
    from_env = _fake_toys(tmp_path / "env", fake_toys_spec)
    monkeypatch.setenv(data_module.DATA_DIR_ENV, str(tmp_path / "env"))
    assert resolve_dataset("toys") == from_env
    from_flag = _fake_toys(tmp_path / "flag", fake_toys_spec)
    assert resolve_dataset("TOYS", data_dir=tmp_path / "flag") == from_flag


def test_a_local_file_with_the_wrong_sha256_is_refused(tmp_path, fake_toys_spec):
    _fake_toys(tmp_path, b"1 9 9 9 9\n")
    with pytest.raises(DataError, match="sha256 .* does not match the expected"):
        resolve_dataset("toys", data_dir=tmp_path)


def test_unknown_name_names_the_flag(tmp_path):
    with pytest.raises(DataError, match="--dataset 'movies' is neither a dataset name"):
        resolve_dataset("movies")


def test_a_path_is_used_as_is(tmp_path):
    path = write_dataset(tmp_path / "own.txt", [[1, 2, 3, 4]])
    assert resolve_dataset(str(path)) == path


@pytest.fixture
def origin_server(tmp_path):
    """A static HTTP server on 127.0.0.1 standing in for the public origin."""
    root = tmp_path / "origin"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_into_the_keras_cache_with_sha256_check(tmp_path, monkeypatch, toys_path,
                                                         origin_server):
    root, url = origin_server
    shutil.copy(toys_path, root / "Toys_and_Games.txt")
    monkeypatch.delenv(data_module.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv(data_module.ORIGIN_ENV, url)
    path = resolve_dataset("toys")
    assert path == tmp_path / "keras" / "datasets" / "Toys_and_Games.txt"
    assert path.read_bytes() == toys_path.read_bytes()


def test_a_corrupted_download_is_refused(tmp_path, monkeypatch, origin_server, fake_toys_spec):
    root, url = origin_server
    (root / "Toys_and_Games.txt").write_bytes(b"1 6 6 6 6\n")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv(data_module.ORIGIN_ENV, url)
    with pytest.raises(DataError) as error:
        resolve_dataset("toys")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "keras" / "datasets" / "Toys_and_Games.txt").exists()


def test_an_unreachable_origin_is_a_one_line_error(tmp_path, monkeypatch, fake_toys_spec):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv(data_module.ORIGIN_ENV, "http://127.0.0.1:9/")
    with pytest.raises(DataError, match="download failed") as error:
        resolve_dataset("toys")
    assert "\n" not in str(error.value)
