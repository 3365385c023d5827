"""Tests of `pipelines/prepare.py` (`iclrec_tf.prepare`): events -> a dataset -> a served model.

The generated log has string ids (some with a comma, quoted in the CSV, or
non-ASCII), exact duplicates, many equal timestamps, and sparse users and
items whose removal makes others sparse in turn, so the k-core needs several
rounds. Expected results come from `brute_force`, which shares no code with
the module: it removes one offending user or item at a time until none is left.
"""

import collections
import json
import os
import pathlib
import random
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO
from prepare_logs import amazon_rows, generated_events, run_main, write_csv

from iclrec_tf import cli
from iclrec_tf.data.datasets import load_sequences
from iclrec_tf.prepare import cli as prepare_cli

PROG = prepare_cli.PROG

TF_ONLY = """
import json, sys
import tensorflow as tf

request = json.loads(sys.argv[1])
answers = []
for path in sys.argv[2:]:
    loaded = tf.saved_model.load(path)
    names = loaded.signatures["serving_default"](item_ids=tf.constant(request["names"]))
    ids = loaded.signatures["serving_item_ids"](item_ids=tf.constant(request["ids"], tf.int64))
    answers.append({
        "item_ids": [[value.decode() for value in row] for row in names["item_ids"].numpy()],
        "scores": names["scores"].numpy().tolist(),
        "unknown_ids": names["unknown_ids"].numpy().tolist(),
        "int_item_ids": ids["item_ids"].numpy().tolist(),
        "int_scores": ids["scores"].numpy().tolist(),
        "signatures": sorted(loaded.signatures),
    })
ours = {"iclrec_tf", "tensorflow_recommenders", "tf_keras"}
print(json.dumps({"answers": answers,
                  "imported": sorted({name.split(".")[0] for name in sys.modules} & ours)}))
"""


def brute_force(events, min_user, min_item):
    """The k-core by definition: `{input index: event}` of the events kept."""
    kept, seen = {}, set()
    for index, event in enumerate(events):
        if event not in seen:
            seen.add(event)
            kept[index] = event
    while True:
        users = collections.Counter(user for user, _, _ in kept.values())
        items = collections.Counter(item for _, item, _ in kept.values())
        sparse = ([("user", u) for u, n in users.items() if n < min_user]
                  + [("item", i) for i, n in items.items() if n < min_item])
        if not sparse:
            return kept
        kind, name = sparse[0]
        position = 0 if kind == "user" else 1
        kept = {index: event for index, event in kept.items() if event[position] != name}


def read_prepared(directory):
    """`{raw user: [raw item, ...]}` read back from the files, in file order."""
    directory = pathlib.Path(directory)
    items = (directory / "items.txt").read_text(encoding="utf-8").splitlines()
    users = (directory / "users.txt").read_text(encoding="utf-8").splitlines()
    data = load_sequences(directory / f"{directory.name}.txt")
    return {users[user - 1]: [items[item - 1] for item in data.sequence(row)]
            for row, user in enumerate(data.user_ids)}


@pytest.fixture(scope="module")
def events():
    return generated_events()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, events):
    """The output directory of the command on the generated CSV, defaults (5-core)."""
    folder = tmp_path_factory.mktemp("prepare")
    log = write_csv(folder / "events.csv", events)
    code = cli.run(lambda: prepare_cli.main(["--input", str(log), "--output",
                                         str(folder / "shop")]), PROG)
    assert code == 0
    return folder / "shop"


def test_the_log_needs_several_k_core_rounds(events, prepared):
    # Otherwise the comparison below would not exercise the repetition.
    stats = json.loads((prepared / "stats.json").read_text())
    assert stats["k_core"]["rounds"] >= 3
    assert 0 < stats["users"] < len({user for user, _, _ in events})


def test_k_core_matches_the_brute_force(events, prepared):
    expected = brute_force(events, 5, 5)
    sequences = read_prepared(prepared)
    kept = collections.Counter((user, item) for user, item, _ in expected.values())
    assert collections.Counter((user, item) for user, items in sequences.items()
                               for item in items) == kept
    assert min(map(len, sequences.values())) >= 5
    assert min(collections.Counter(i for s in sequences.values() for i in s).values()) >= 5


def test_stats_count_every_removed_record(events, prepared):
    stats = json.loads((prepared / "stats.json").read_text())
    expected = brute_force(events, 5, 5)
    assert stats["input_records"] == len(events)
    assert stats["removed"]["duplicates"] == len(events) - len(set(events))
    assert stats["interactions"] == len(expected)
    assert (stats["removed"]["min_user"] + stats["removed"]["min_item"]
            == len(set(events)) - len(expected))
    lengths = [len(items) for items in read_prepared(prepared).values()]
    assert stats["sequence_length"] == {"min": min(lengths), "max": max(lengths),
                                        "mean": round(np.mean(lengths), 4),
                                        "median": float(np.median(lengths))}


def test_sequences_are_chronological_ties_in_input_order(events, prepared):
    expected = brute_force(events, 5, 5)
    by_user = collections.defaultdict(list)
    for index, (user, item, time) in expected.items():
        by_user[user].append((time, index, item))
    sequences = read_prepared(prepared)
    assert sequences == {user: [item for _, _, item in sorted(rows)]
                         for user, rows in by_user.items()}
    # The log is built for ties; a sort that broke them by item id would differ.
    ties = sum(len(rows) - len({time for time, _, _ in rows}) for rows in by_user.values())
    assert ties > 20


def test_ids_are_numbered_by_first_appearance(events, prepared):
    lines = (prepared / "shop.txt").read_text().splitlines()
    users = [int(line.split()[0]) for line in lines]
    assert users == list(range(1, len(lines) + 1))
    first_seen = []
    for line in lines:
        for item in map(int, line.split()[1:]):
            if item not in first_seen:
                first_seen.append(item)
    assert first_seen == list(range(1, len(first_seen) + 1))
    # Users in order of their first kept record in the input.
    kept = brute_force(events, 5, 5)
    order = list(dict.fromkeys(kept[index][0] for index in sorted(kept)))
    assert (prepared / "users.txt").read_text(encoding="utf-8").splitlines() == order


def test_a_killed_runs_staging_directory_is_pointed_out(tmp_path, capsys, events):
    leftover = tmp_path / ".shop.0123456789ab"
    (leftover / ".work").mkdir(parents=True)
    log = write_csv(tmp_path / "events.csv", events)
    code, _, errors = run_main(["--input", str(log), "--output", str(tmp_path / "shop")],
                               capsys)
    assert code == 0
    assert errors == [f"note: {leftover} was left by a run that was killed; delete it to "
                      "free its space"]
    assert (tmp_path / "shop" / "shop.txt").exists() and leftover.exists()


@pytest.mark.parametrize("row, message", [
    ("u9,i9", "events.csv:4: 2 fields, the header has 3"),
    ("u9,i9,yesterday", "events.csv:4: timestamp 'yesterday' is neither a number nor an ISO"),
    (",i9,30", "events.csv:4: empty user_id"),
    ("u9,  ,30", "events.csv:4: empty item_id"),
], ids=["missing column", "bad timestamp", "empty user", "blank item"])
def test_a_malformed_row_is_one_line_naming_file_and_line(row, message, tmp_path, capsys):
    log = tmp_path / "events.csv"
    log.write_text("user_id,item_id,timestamp\nu1,i1,10\nu1,i2,20\n" + row + "\nu2,i1,5\n")
    code, _, errors = run_main(["--input", str(log), "--output", str(tmp_path / "out")],
                               capsys)
    assert code == 2
    assert len(errors) == 1 and message in errors[0], errors
    assert sorted(path.name for path in tmp_path.iterdir()) == ["events.csv"]


def test_the_script_fails_in_one_line_without_traceback(tmp_path):
    log = tmp_path / "events.tsv"
    log.write_text("user_id\titem_id\ttime\nu1\ti1\t10\n")
    result = subprocess.run(
        [sys.executable, str(REPO / "pipelines" / "prepare.py"), "--input", str(log),
         "--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{PROG}: error: {log}:1: no column 'timestamp' (the header has 'user_id', "
        "'item_id', 'time'); set --time-col"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, message", [
    (["--min-user", "3"], "--min-user must be at least 4"),
    (["--min-item", "0"], "--min-item must be a positive integer"),
    (["--preset", "amazon", "--user-col", "u"], "--preset amazon sets the columns; drop "
                                                 "--user-col"),
    (["--min-user", "50"], "nothing left after filtering"),
    (["--memory-mb", "0"], "--memory-mb must be at least 64, got 0"),
    (["--threads", "0"], "--threads must be between 1 and"),
    (["--master", "local[1]"], "--master is for --engine spark"),
    (["--columns", "a,b"], "--columns names the columns of a CSV/TSV without a header; this "
                           "log is jsonl"),
    (["--output", "{existing}"], "already exists; remove it or choose another"),
])
def test_bad_flags_are_one_line(flags, message, tmp_path, capsys, events):
    log = write_csv(tmp_path / "events.csv", events)
    if "--columns" in flags:
        log = tmp_path / "events.jsonl"
        log.write_text('{"user_id": "u", "item_id": "i", "timestamp": 1}\n')
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    argv = ["--input", str(log), "--output", str(tmp_path / "out"),
            *[flag.format(existing=existing) for flag in flags]]
    code, _, errors = run_main(argv, capsys)
    assert code == 2
    assert len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "out").exists()
    assert (existing / "keep.txt").read_text() == "mine"


def test_the_amazon_preset_equals_the_generic_path(tmp_path, capsys):
    rows = amazon_rows()  # its last 20 rows are exact duplicates
    write_csv(tmp_path / "ratings.csv", rows, header=None)
    write_csv(tmp_path / "with_header.csv", rows, header=("user", "item", "rating", "time"))
    preset = tmp_path / "preset"
    generic = tmp_path / "generic"
    assert run_main(["--input", str(tmp_path / "ratings.csv"), "--output", str(preset),
                     "--preset", "amazon"], capsys)[0] == 0
    assert run_main(["--input", str(tmp_path / "with_header.csv"), "--output", str(generic),
                     "--user-col", "user", "--item-col", "item", "--time-col", "time",
                     "--rating-col", "rating"], capsys)[0] == 0
    stats = json.loads((preset / "stats.json").read_text())
    assert stats == json.loads((generic / "stats.json").read_text())
    assert stats["removed"]["duplicates"] == len(rows) - len(set(rows)) >= 20
    assert stats["users"] > 10
    assert (preset / "preset.txt").read_text() == (generic / "generic.txt").read_text()
    assert (preset / "items.txt").read_text() == (generic / "items.txt").read_text()


def test_events_to_a_tensorflow_only_model_that_speaks_raw_ids(tmp_path, monkeypatch, capsys):
    """prepare -> fit --export -> export --run -> a TensorFlow-only process asks in raw ids."""
    from iclrec_tf import export

    rng = random.Random(2)
    items = [f"sku-{chr(97 + i % 26)}{i}" for i in range(30)]
    events = []
    for user in range(48):  # each user walks the catalogue in order: learnable
        start = rng.randrange(30)
        events += [(f"shopper-{user}", items[(start + step) % 30], 1_000 + 10 * step)
                   for step in range(rng.randint(5, 9))]
    write_csv(tmp_path / "events.csv", events)
    monkeypatch.chdir(tmp_path)  # fit --export writes saved_models/NAME there
    assert run_main(["--input", "events.csv", "--output", "shop"], capsys)[0] == 0
    # A process of its own, as a user runs it: fit sets process-wide TensorFlow state.
    result = subprocess.run(
        [sys.executable, "-m", "iclrec_tf.fit", "--dataset", "shop/shop.txt", "--output-dir",
         "runs/shop", "--epochs", "1", "--max-seq-length", "8", "--num-blocks", "1",
         "--hidden-size", "16", "--num-intent-clusters", "4", "--batch-size", "64",
         "--verbose", "0", "--export", "shop", "--top-k", "5"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "saved_models/shop/1"
    assert (tmp_path / "runs/shop/items.txt").read_text() == (
        tmp_path / "shop/items.txt").read_text()
    assert export.main(["--run", "runs/shop", "--model-dir", "saved_models/shop",
                        "--top-k", "5"]) == 0
    capsys.readouterr()

    vocabulary = (tmp_path / "shop/items.txt").read_text().splitlines()
    history = [items[3], items[4], items[5]]
    request = {"names": [history + ["not-an-item", ""], ["", "", "", "", ""],
                         ["gone", "also-gone", items[7], "", ""]],
               "ids": [[vocabulary.index(name) + 1 for name in history] + [0, 0],
                       [0] * 5, [0, 0, vocabulary.index(items[7]) + 1, 0, 0]]}
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")}
    result = subprocess.run(
        [sys.executable, "-c", TF_ONLY, json.dumps(request),
         # fit --export's version, then export --run's
         str(tmp_path / "saved_models/shop/1"), str(tmp_path / "saved_models/shop/2")],
        capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    output = json.loads(result.stdout.splitlines()[-1])
    assert output["imported"] == []
    assert len(output["answers"]) == 2
    for answer in output["answers"]:
        assert answer["signatures"] == ["encode", "intent", "serving_default",
                                        "serving_item_ids"]
        assert answer["unknown_ids"] == [1, 0, 2]
        for row, ids in enumerate(answer["item_ids"]):
            assert len(ids) == 5 and set(ids) <= set(vocabulary)
            assert not set(ids) & set(request["names"][row])  # never the request's own
            # The same answer as the integer signature, translated.
            assert ids == [vocabulary[i - 1] for i in answer["int_item_ids"][row]]
        np.testing.assert_allclose(answer["scores"], answer["int_scores"], rtol=0, atol=1e-6)
