"""Tests of `iclrec_tf.export`: the TF Serving SavedModel, its signatures and its CLI.

The model is the reference implementation's released Toys weights (fast to
load, and a quality worth checking the exclude protocol on). Its intent
centroids are the mean-pooled encodings of the first K users' train inputs,
so the `intent` signature exists and its answer for those users is known by
construction: each one's own index.
"""

import contextlib
import io
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import reference_dir

from iclrec_tf import cli, export
from iclrec_tf.config import TrainConfig
from iclrec_tf.data.pipeline import SequencePipelines
from iclrec_tf.model.iclrec import build_model
from iclrec_tf.model.reference import load_reference_weights
from iclrec_tf.serve import module as serving
from iclrec_tf.serve import saved_model
from iclrec_tf.train.intents import encode_representations
from iclrec_tf.train.metrics import RankingEvaluator, ranking_metrics
from iclrec_tf.train.rundir import CONFIG_FILE, RunDirectory

REPO = pathlib.Path(__file__).resolve().parents[1]
SERVE_DIR = REPO / "pipelines" / "serve"
REFERENCE_WEIGHTS = reference_dir() / "ICLRec-Toys_and_Games-1.npz"
SAVED_MODEL_CLI = pathlib.Path(sys.executable).with_name("saved_model_cli")
PROG = "python -m iclrec_tf.export"
TOP_K = 100
MAX_LEN = 50

# Loads the export in a process that imports TensorFlow and nothing of ours.
TF_ONLY = """
import json, sys
import numpy as np
import tensorflow as tf

loaded = tf.saved_model.load(sys.argv[1])
outputs = loaded.signatures["serving_default"](item_ids=tf.constant(np.load(sys.argv[2])))
np.savez(sys.argv[3], **{name: value.numpy() for name, value in outputs.items()})
ours = {"iclrec_tf", "tensorflow_recommenders", "tf_keras"}
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules} & ours)))
"""


@pytest.fixture(scope="module")
def config():
    return TrainConfig.for_dataset("toys")


@pytest.fixture(scope="module")
def pipelines(toys, config):
    return SequencePipelines(toys, config.max_seq_length)


@pytest.fixture(scope="module")
def model(toys, config, pipelines):
    model = build_model(config, toys.item_size)
    load_reference_weights(model.encoder, REFERENCE_WEIGHTS)
    first_users = pipelines.train_inputs()[:config.num_intent_clusters]
    model.set_centroids(encode_representations(
        model, tf.data.Dataset.from_tensor_slices(first_users).batch(256)))
    return model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, model, config):
    run_dir = RunDirectory(tmp_path_factory.mktemp("run"), create=True)
    run_dir.write_text(CONFIG_FILE, config.to_json() + "\n")
    run_dir.save_weights(model)
    return run_dir.path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("saved_models") / "toys"


@pytest.fixture(scope="module")
def cli_export(run_dir, model_dir):
    """`(exit code, stdout)` of the export command on the run directory."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = export.main(["--run", str(run_dir), "--model-dir", str(model_dir)])
    return code, stdout.getvalue()


@pytest.fixture(scope="module")
def version_dir(cli_export):
    return pathlib.Path(cli_export[1].splitlines()[-1])


@pytest.fixture(scope="module")
def served(version_dir):
    return tf.saved_model.load(str(version_dir))


@pytest.fixture(scope="module")
def kept_version_dir(model, model_dir, version_dir, toys):
    """A `--keep-history` export into the same model directory, after `version_dir`."""
    return saved_model.export_saved_model(model, model_dir, top_k=TOP_K, keep_history=True,
                                     mask_id=toys.mask_id)


def histories(toys, users):
    """Each user's test input, the whole history a client would send."""
    return [toys.sequence(user)[:-1] for user in users]


def spread_users(toys, count=200):
    """`count` users from the shortest history to the longest (550 items)."""
    by_length = np.argsort(toys.lengths, kind="stable")
    return by_length[np.linspace(0, len(by_length) - 1, count).astype(int)]


def left_padded(rows, width=None):
    width = max(len(row) for row in rows) if width is None else width
    return np.stack([np.pad(row, (width - len(row), 0)) for row in rows]).astype(np.int64)


def call(loaded, signature, item_ids):
    outputs = loaded.signatures[signature](item_ids=tf.constant(np.asarray(item_ids, np.int64)))
    return {name: value.numpy() for name, value in outputs.items()}


def model_top_k(model, rows, mask_id, exclude_history=True):
    """The in-process model's top-K: `score_items` on each row's last 50 items.

    Returns:
      [rows, k] ids and the [rows, item_size] scores with the excluded ids at -inf.
    """
    windows = left_padded([row[-MAX_LEN:] for row in rows], MAX_LEN)
    scores = model.score_items(tf.constant(windows)).numpy()
    if exclude_history:
        for scored, row in zip(scores, rows, strict=True):
            scored[row] = -np.inf
    scores[:, [0, mask_id]] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :TOP_K], scores


def assert_same_top_k(outputs, expected_ids, scores):
    """Equal top-K, up to the order of ids whose scores tie within float rounding.

    The export encodes each row at a narrower width than the model and in other
    batches, which moves scores by ~1e-6; two neighbours closer than that may
    swap (2 of 51,200 ids when this was written).
    """
    expected_scores = np.take_along_axis(scores, expected_ids, axis=1)
    np.testing.assert_allclose(outputs["scores"], expected_scores, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(scores, outputs["item_ids"], axis=1),
                               outputs["scores"], rtol=0, atol=1e-5)


def signature_table(show_all):
    """`{signature: {name: (dtype, shape)}}` of the inputs and outputs `show --all` lists."""
    table = {}
    for block in show_all.split("signature_def['")[1:]:
        name = block.split("'", 1)[0]
        table[name] = {
            f"{kind}:{key}": (dtype, shape.strip())
            for kind, key, dtype, shape in re.findall(
                r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (.*)", block)}
    return table


def test_the_command_writes_version_1_then_2_and_prints_it(cli_export, version_dir,
                                                         kept_version_dir, model_dir):
    code, stdout = cli_export
    assert code == 0
    assert version_dir == model_dir / "1"
    assert (version_dir / "saved_model.pb").is_file()
    assert kept_version_dir == model_dir / "2"
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "2"]


def test_saved_model_cli_lists_the_three_signatures(version_dir):
    result = subprocess.run([str(SAVED_MODEL_CLI), "show", "--dir", str(version_dir), "--all"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    table = signature_table(result.stdout)
    table.pop("__saved_model_init_op")
    ids = ("DT_INT64", "(-1, -1)")
    assert table == {
        "serving_default": {"inputs:item_ids": ids,
                            "outputs:item_ids": ("DT_INT64", f"(-1, {TOP_K})"),
                            "outputs:scores": ("DT_FLOAT", f"(-1, {TOP_K})")},
        "encode": {"inputs:item_ids": ids, "outputs:embedding": ("DT_FLOAT", "(-1, 64)")},
        "intent": {"inputs:item_ids": ids, "outputs:intent_id": ("DT_INT64", "(-1)"),
                   "outputs:probabilities": ("DT_FLOAT", "(-1, 256)")},
    }


def test_saved_model_cli_run_returns_k_ids(version_dir, tmp_path, toys):
    result = subprocess.run(
        [str(SAVED_MODEL_CLI), "run", "--dir", str(version_dir), "--tag_set", "serve",
         "--signature_def", "serving_default", "--input_exprs", "item_ids=[[1, 2, 3]]",
         "--outdir", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    ids = np.load(tmp_path / "item_ids.npy")
    assert ids.shape == (1, TOP_K)
    assert not set(ids[0]) & {0, 1, 2, 3, toys.mask_id}


def test_tensorflow_alone_serves_the_models_top_k(version_dir, model, toys, tmp_path):
    rows = histories(toys, spread_users(toys))
    np.save(tmp_path / "request.npy", left_padded(rows))
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")}
    result = subprocess.run(
        [sys.executable, "-c", TF_ONLY, str(version_dir), str(tmp_path / "request.npy"),
         str(tmp_path / "outputs.npz")],
        capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1]) == []
    outputs = dict(np.load(tmp_path / "outputs.npz"))
    assert outputs["item_ids"].shape == (200, TOP_K)
    assert_same_top_k(outputs, *model_top_k(model, rows, toys.mask_id))


def test_recommendations_leave_out_history_padding_and_mask(served, version_dir,
                                                          kept_version_dir, model, toys):
    rows = histories(toys, spread_users(toys))
    request = left_padded(rows)
    for row, ids in zip(rows, call(served, "serving_default", request)["item_ids"], strict=True):
        assert not set(ids) & (set(row) | {0, toys.mask_id, -1})

    kept = call(tf.saved_model.load(str(kept_version_dir)), "serving_default", request)
    repeats = [bool(set(ids) & set(row)) for ids, row in zip(kept["item_ids"], rows, strict=True)]
    assert sum(repeats) > len(rows) // 2
    assert not np.isin(kept["item_ids"], [0, toys.mask_id, -1]).any()
    assert_same_top_k(kept, *model_top_k(model, rows, toys.mask_id, exclude_history=False))


def test_hit_rate_of_the_export_equals_the_exclude_protocol(served, model, toys, pipelines):
    dataset = pipelines.evaluation("test", 1024)
    ranks = []
    for batch in dataset:
        # to_tensor pads on the right; the signature accepts padding anywhere.
        ids = call(served, "serving_default", batch["history"].to_tensor())["item_ids"]
        hits = ids == batch["answer"].numpy()[:, None]
        ranks.append(np.where(hits.any(axis=1), hits.argmax(axis=1), TOP_K))
    served_metrics = ranking_metrics(np.concatenate(ranks))
    expected = RankingEvaluator(model, dataset, "exclude", toys.mask_id)()
    assert len(np.concatenate(ranks)) == toys.num_users
    assert served_metrics == expected
    assert served_metrics["HR@20"] > 0.1  # the released weights' quality, not an empty model's


def test_long_empty_and_one_item_histories_are_served(served, model, toys):
    longest = toys.sequence(int(np.argmax(toys.lengths)))[:-1]
    assert len(longest) > MAX_LEN
    np.testing.assert_array_equal(call(served, "encode", [longest])["embedding"],
                                  call(served, "encode", [longest[-MAX_LEN:]])["embedding"])
    assert not set(call(served, "serving_default", [longest])["item_ids"][0]) & set(longest)

    for request in ([[0, 0, 0]], np.zeros((1, 0)), [[7]], np.zeros((0, 4)), [[0, 0], [0, 7]]):
        outputs = call(served, "serving_default", request)
        assert outputs["item_ids"].shape == outputs["scores"].shape == (len(request), TOP_K)
        assert not np.isin(outputs["item_ids"], [0, 7, toys.mask_id, -1]).any()
    rows = [np.array([], np.int64), np.array([7])]
    assert_same_top_k(call(served, "serving_default", [[0, 0], [0, 7]]),
                      *model_top_k(model, rows, toys.mask_id))


def test_slots_without_a_candidate_are_minus_one(served, toys):
    left = [3, 77, 500]
    everything_else = np.setdiff1d(np.arange(1, toys.max_item + 1), left)
    outputs = call(served, "serving_default", [everything_else])
    assert sorted(outputs["item_ids"][0, :3]) == left
    assert np.isfinite(outputs["scores"][0, :3]).all()
    assert (outputs["item_ids"][0, 3:] == -1).all()
    assert (outputs["scores"][0, 3:] == -np.inf).all()


def test_padding_may_be_on_either_side(served):
    left = [[0, 0, 9, 10, 11], [1, 2, 3, 4, 5]]
    right = [[9, 10, 11, 0, 0], [1, 2, 3, 4, 5]]
    for signature in ("serving_default", "encode", "intent"):
        from_left, from_right = call(served, signature, left), call(served, signature, right)
        for name, value in from_left.items():
            np.testing.assert_array_equal(value, from_right[name])


@pytest.mark.parametrize("item_ids", [[[1.0, 2.0]], [["1", "2"]]], ids=["float", "string"])
def test_a_float_or_string_input_is_refused(served, item_ids):
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a int64 tensor"):
        served.signatures["serving_default"](item_ids=tf.constant(item_ids))


def test_an_id_outside_the_vocabulary_is_refused_in_its_terms(served, toys):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"item_ids must be in 0\.\.11925"):
        call(served, "serving_default", [[1, toys.item_size]])


def test_intents_are_the_ones_training_assigns(served, model, pipelines, config):
    first_users = pipelines.train_inputs()[:config.num_intent_clusters]
    outputs = call(served, "intent", first_users)
    np.testing.assert_array_equal(outputs["intent_id"], np.arange(config.num_intent_clusters))

    windows = next(iter(pipelines.evaluation("test", 512)))["input_ids"]
    outputs = call(served, "intent", windows)
    expected = model.assign_intents(
        model.intent_representation(model(windows, training=False), windows))
    np.testing.assert_array_equal(outputs["intent_id"], expected)
    np.testing.assert_array_equal(outputs["probabilities"].argmax(axis=1), outputs["intent_id"])
    np.testing.assert_allclose(outputs["probabilities"].sum(axis=1), 1.0, rtol=1e-5)


def test_a_model_without_intents_has_no_intent_signature(model):
    model.intents_ready.assign(False)
    try:
        module = serving.serving_module(model)
    finally:
        model.intents_ready.assign(True)
    assert not hasattr(module, "intent")


def test_the_rest_example_matches_the_signature(served):
    request = json.loads((SERVE_DIR / "predict_request.json").read_text())
    response = json.loads((SERVE_DIR / "predict_response.json").read_text())
    item_ids = [instance["item_ids"] for instance in request["instances"]]
    outputs = call(served, request["signature_name"], item_ids)
    assert len(response["predictions"]) == len(item_ids)
    for row, prediction in enumerate(response["predictions"]):
        assert set(prediction) == set(outputs)
        # The example was produced by this export of the released weights.
        assert set(prediction["item_ids"]) == set(outputs["item_ids"][row])
        np.testing.assert_allclose(prediction["scores"], outputs["scores"][row], atol=1e-5)
    assert set(call(served, "encode", item_ids)) == {"embedding"}
    assert set(call(served, "intent", item_ids)) == {"intent_id", "probabilities"}


@pytest.mark.parametrize("argv, message", [
    (["--model-dir", "m"], "the following arguments are required: --run"),
    (["--run", "r", "--model-dir", "m", "--top-k", "many"], "--top-k: invalid int value"),
    (["--run", "{missing}", "--model-dir", "m"], "{missing}: no config.json"),
    (["--run", "{untrained}", "--model-dir", "m"], "{untrained}: no trained weights"),
    (["--run", "{run}", "--model-dir", "m", "--top-k", "0"], "--top-k must be an integer in"),
])
def test_mistakes_are_one_line_and_exit_2(argv, message, run_dir, config, tmp_path, capsys,
                                          monkeypatch):
    untrained = RunDirectory(tmp_path / "untrained", create=True)
    untrained.write_text(CONFIG_FILE, config.to_json() + "\n")
    paths = {"missing": tmp_path / "missing", "untrained": untrained.path, "run": run_dir}
    argv = [arg.format(**paths) for arg in argv]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [PROG, *argv])
    try:
        code = cli.run(export.main, PROG)
    except SystemExit as exit_:
        code = exit_.code
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(errors) == 1 and message.format(**paths) in errors[0], errors
    assert not (tmp_path / "m").exists()
