import dataclasses
import json

import pytest

from iclrec_tf.config import (
    DATASET_PRESETS,
    ENCODERS,
    NON_CAUSAL_ENCODERS,
    PRESETS,
    TrainConfig,
)
from iclrec_tf.errors import ConfigError


def test_presets_set_the_released_encoder_depths():
    assert {name: TrainConfig.for_dataset(name).num_blocks for name in DATASET_PRESETS} == {
        "toys": 3, "beauty": 1, "sports": 2, "yelp": 2}
    toys = TrainConfig.for_dataset("toys")
    # The released scripts share everything else.
    assert (toys.batch_size, toys.lr, toys.num_intent_clusters, toys.seqcl_weight,
            toys.icl_weight, toys.contrast_type, toys.fnm, toys.seed) == (
        256, 1e-3, 256, 0.1, 0.1, "hybrid", False, 1)


def test_overrides_win_over_presets_and_none_is_ignored():
    config = TrainConfig.for_dataset("toys", num_blocks=1, epochs=None, lr=0.01)
    assert (config.num_blocks, config.epochs, config.lr) == (1, 300, 0.01)


def test_a_file_dataset_gets_the_defaults():
    assert TrainConfig.for_dataset("my/own.txt").num_blocks == TrainConfig().num_blocks


@pytest.mark.parametrize("field,value,flag", [
    ("epochs", 0, "--epochs"),
    ("batch_size", -3, "--batch-size"),
    ("num_intent_clusters", 0, "--num-intent-clusters"),
    ("max_seq_length", 0, "--max-seq-length"),
    ("lr", 0.0, "--lr"),
    ("lr", float("nan"), "--lr"),
    ("hidden_dropout", 1.0, "--hidden-dropout"),
    ("contrast_type", "both", "--contrast-type"),
    ("augmentation", "insert", "--augmentation"),
    ("hidden_size", 63, "--hidden-size"),
    ("patience", -1, "--patience"),
    ("next_item_loss", "hinge", "--next-item-loss"),
    ("num_negatives", 0, "--num-negatives"),
    ("pooling", "max", "--pooling"),
    ("seqcl_representation", "first", "--seqcl-representation"),
    ("preset", "best", "--preset"),
    ("view_encodings", "twice", "--view-encodings"),
    ("kmeans", "faiss", "--kmeans"),
    ("train_samples", "sessions", "--train-samples"),
    ("contrast_views", "dropout", "--contrast-views"),
    ("contrast_views", "same_target", "--contrast-views"),  # needs prefixes: below
    ("encoder", "lstm", "--encoder"),
    ("fourier_alpha", 1.5, "--fourier-alpha"),
    ("fourier_alpha", float("nan"), "--fourier-alpha"),
    ("fourier_cutoff", 0, "--fourier-cutoff"),
    ("fourier_cutoff", 51, "--fourier-cutoff"),  # above --max-seq-length
    ("filter_bases", 0, "--filter-bases"),
    ("filter_reg_weight", -0.1, "--filter-reg-weight"),
])
def test_validate_names_the_flag(field, value, flag):
    config = dataclasses.replace(TrainConfig(), **{field: value})
    with pytest.raises(ConfigError) as error:
        config.validate()
    assert str(error.value).startswith(flag)


@pytest.mark.parametrize("contrast_type,fnm,uses", [
    ("hybrid", False, True), ("intent", False, True), ("instance", False, False),
    ("instance", True, True), ("none", False, False)])
def test_uses_intents(contrast_type, fnm, uses):
    assert TrainConfig(contrast_type=contrast_type, fnm=fnm).uses_intents is uses


def test_json_round_trip_with_non_defaults():
    config = TrainConfig(dataset="beauty", num_blocks=4, fnm=True, lr=0.005,
                         contrast_type="intent")
    assert TrainConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize("settings,named", [
    ({"pooling": "mean"}, "--pooling mean"),
    ({"pooling": "masked_mean", "seqcl_representation": "flatten"},
     "--seqcl-representation flatten"),
    ({"contrast_type": "instance", "fnm": True, "seqcl_representation": "last"},
     "--pooling mean"),  # FNM's intents read the pooling too
])
def test_length_buckets_refuse_a_representation_that_reads_padding(settings, named):
    config = dataclasses.replace(TrainConfig(length_buckets=True), **settings)
    with pytest.raises(ConfigError) as error:
        config.validate()
    message = str(error.value)
    assert message.startswith("--length-buckets") and named in message and "\n" not in message


def test_same_target_views_need_prefix_samples():
    with pytest.raises(ConfigError, match="^--contrast-views same_target needs "
                                          "--train-samples prefixes"):
        TrainConfig(contrast_views="same_target").validate()
    TrainConfig(contrast_views="same_target", train_samples="prefixes").validate()


def test_length_buckets_take_padding_free_representations_or_none():
    TrainConfig(length_buckets=True, pooling="masked_mean",
                seqcl_representation="last").validate()
    TrainConfig(length_buckets=True, contrast_type="none").validate()  # nothing pooled


def test_the_plus_preset_keeps_the_datasets_depth_and_yields_to_flags():
    plus = TrainConfig.for_dataset("beauty", preset="plus")
    # Beauty's own choice: the sampled softmax; the others keep the full one.
    assert (plus.preset, plus.num_blocks, plus.next_item_loss) == ("plus", 1, "sampled")
    assert plus.validate() is plus
    assert TrainConfig.for_dataset("toys", preset="plus").next_item_loss == "softmax"
    assert (plus.warm_up_epochs, TrainConfig.for_dataset("beauty").warm_up_epochs) == (10, 0)
    assert TrainConfig.for_dataset("shop.txt", preset="plus").next_item_loss == "softmax"
    assert TrainConfig.for_dataset("beauty", preset="plus",
                                   next_item_loss="softmax").next_item_loss == "softmax"
    assert TrainConfig.for_dataset("beauty", preset="plus", lr=0.01).lr == 0.01
    assert TrainConfig.for_dataset("toys") == TrainConfig(num_blocks=3)  # the paper's
    with pytest.raises(ConfigError, match="--preset must be one of paper, plus"):
        TrainConfig.for_dataset("toys", preset="fast")


def test_a_non_causal_encoder_trains_on_prefixes_in_every_preset():
    for dataset in ("beauty", "own.txt"):
        for preset in PRESETS:
            for encoder in ENCODERS:
                config = TrainConfig.for_dataset(dataset, preset=preset,
                                                 encoder=encoder).validate()
                expected = "prefixes" if encoder in NON_CAUSAL_ENCODERS else "users"
                assert (config.encoder, config.train_samples) == (encoder, expected)
    assert NON_CAUSAL_ENCODERS == ("fourier",)
    with pytest.raises(ConfigError) as error:
        TrainConfig.for_dataset("beauty", encoder="fourier", train_samples="users").validate()
    assert str(error.value) == ("--encoder fourier is not causal (a position sees the items "
                                "after it): it trains on --train-samples prefixes only")


def test_the_encoder_is_attention_by_default_and_old_configs_read_as_attention():
    assert ENCODERS[0] == TrainConfig().encoder == "attention"
    written_before = json.loads(TrainConfig(num_blocks=3).to_json())
    for name in ("encoder", "fourier_alpha", "fourier_cutoff", "filter_bases",
                 "filter_reg_weight"):
        del written_before[name]
    assert TrainConfig.from_json(json.dumps(written_before)) == TrainConfig(num_blocks=3)
    config = TrainConfig(encoder="filter", filter_bases=16, fourier_alpha=0.2)
    assert TrainConfig.from_json(config.to_json()) == config
