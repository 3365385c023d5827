import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, reference_dir
from reference_numpy import random_state_dict

from iclrec_tf.config import TrainConfig
from iclrec_tf.data.datasets import load_sequences, resolve_dataset
from iclrec_tf.data.pipeline import SequencePipelines
from iclrec_tf.errors import ReferenceWeightsError
from iclrec_tf.model.encoder import EncoderConfig, SequenceEncoder
from iclrec_tf.model.iclrec import build_model
from iclrec_tf.model.reference import (
    load_reference_weights,
    read_reference_weights,
    reference_shape,
)
from iclrec_tf.train.metrics import RankingEvaluator

SHARED_REFERENCE = reference_dir()
# REFERENCE.md: test metrics of the released weights, measured with the reference code.
REFERENCE_TEST_METRICS = {
    "Toys_and_Games": {"HR@5": 0.0598, "NDCG@5": 0.0404, "HR@10": 0.0834, "NDCG@10": 0.0480,
                       "HR@20": 0.1138, "NDCG@20": 0.0557},
    "Beauty": {"HR@5": 0.0500, "NDCG@5": 0.0326, "HR@10": 0.0744, "NDCG@10": 0.0403,
               "HR@20": 0.1058, "NDCG@20": 0.0483},
}


def test_evaluate_cli_reproduces_the_reference_toys_metrics(data_dir):
    weights = SHARED_REFERENCE / "ICLRec-Toys_and_Games-1.npz"
    result = subprocess.run(
        [sys.executable, "-m", "iclrec_tf.evaluate", "--dataset", "toys", "--data-dir",
         str(data_dir), "--reference-weights", str(weights)],
        capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    for name, expected in REFERENCE_TEST_METRICS["Toys_and_Games"].items():
        assert abs(metrics[name] - expected) <= 0.0002, (name, metrics[name], expected)


def test_beauty_weights_reproduce_the_reference_metrics(data_dir):
    path = SHARED_REFERENCE / "ICLRec-Beauty-1.npz"
    item_size, blocks = reference_shape(read_reference_weights(path))
    assert blocks == 1
    data = load_sequences(resolve_dataset("beauty", data_dir))
    assert item_size == data.item_size
    model = build_model(TrainConfig.for_dataset("beauty"), data.item_size)
    load_reference_weights(model.encoder, path)
    pipelines = SequencePipelines(data, 50)
    metrics = RankingEvaluator(model, pipelines.evaluation("test", 2048), "reference",
                               data.mask_id)()
    for name, expected in REFERENCE_TEST_METRICS["Beauty"].items():
        assert abs(metrics[name] - expected) <= 0.0002, (name, metrics[name], expected)


def _encoder(num_blocks, item_size=30):
    encoder = SequenceEncoder(EncoderConfig.from_train_config(
        TrainConfig(max_seq_length=50, num_blocks=num_blocks), item_size))
    encoder(tf.zeros((1, 50), tf.int32))
    return encoder


def test_loading_transposes_dense_weights(tmp_path):
    arrays = random_state_dict(item_size=30, num_blocks=2)
    np.savez(tmp_path / "w.npz", **arrays)
    encoder = _encoder(2)
    load_reference_weights(encoder, tmp_path / "w.npz")
    np.testing.assert_array_equal(encoder.blocks[1].feed_forward.dense_1.kernel.numpy(),
                                  arrays["item_encoder.layer.1.intermediate.dense_1.weight"].T)
    np.testing.assert_array_equal(encoder.embedding_table.numpy(),
                                  arrays["item_embeddings.weight"])


def test_wrong_block_count_is_refused(tmp_path):
    np.savez(tmp_path / "w.npz", **random_state_dict(item_size=30, num_blocks=3))
    with pytest.raises(ReferenceWeightsError, match="unexpected array item_encoder.layer.2") as e:
        load_reference_weights(_encoder(2), tmp_path / "w.npz")
    assert "the model has 2 blocks; the file has 3" in str(e.value)


def test_wrong_shape_is_refused_with_the_array_name(tmp_path):
    arrays = random_state_dict(item_size=30, num_blocks=1)
    arrays["item_encoder.layer.0.attention.key.weight"] = np.zeros((64, 32), np.float32)
    np.savez(tmp_path / "w.npz", **arrays)
    with pytest.raises(ReferenceWeightsError,
                       match=r"attention.key.weight has shape \(64, 32\), the model expects "
                             r"\(64, 64\)"):
        load_reference_weights(_encoder(1), tmp_path / "w.npz")


def test_a_file_that_is_not_npz_is_refused(tmp_path):
    (tmp_path / "w.npz").write_text("not an archive")
    with pytest.raises(ReferenceWeightsError, match="not a readable .npz"):
        read_reference_weights(tmp_path / "w.npz")


def test_length_bucketed_evaluation_of_the_toys_weights_gives_the_same_metrics(toys):
    model = build_model(TrainConfig.for_dataset("toys"), toys.item_size)
    load_reference_weights(model.encoder, SHARED_REFERENCE / "ICLRec-Toys_and_Games-1.npz")
    pipelines = SequencePipelines(toys, 50)
    # The exclude protocol's history alignment under bucketing is checked on synthetic
    # data in tests/train/test_metrics.py; here, the released weights on the real test split.
    padded, bucketed = (
        RankingEvaluator(model, pipelines.evaluation("test", 2048, length_buckets),
                         "reference", toys.mask_id)()
        for length_buckets in (False, True))
    assert bucketed == pytest.approx(padded, abs=1e-6)


def test_bfloat16_keeps_the_toys_weights_next_item_choices(toys):
    """Mixed precision on trained weights: the last states within 1% on average, and
    the same top-1 next item for (almost) every test user."""
    weights = SHARED_REFERENCE / "ICLRec-Toys_and_Games-1.npz"
    inputs = np.concatenate([batch["input_ids"] for batch in
                             SequencePipelines(toys, 50).evaluation("test", 512)])[:2048]
    states, scores = [], []
    for dtype in ("float32", "bfloat16"):
        model = build_model(TrainConfig.for_dataset("toys", mixed_precision=dtype),
                            toys.item_size)
        load_reference_weights(model.encoder, weights)
        states.append(model.encoder(inputs, last_position_only=True).numpy())
        scores.append(model.score_items(tf.constant(inputs)).numpy())
    float32, bfloat16 = states
    assert np.abs(bfloat16 - float32).mean() < 0.01 * np.abs(float32).mean()
    agreement = np.mean(scores[0].argmax(axis=1) == scores[1].argmax(axis=1))
    assert agreement > 0.98, agreement
