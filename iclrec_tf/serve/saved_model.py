"""Versioned SavedModel export in TF Serving's layout: `model_dir/<version>/`.

A version is written to a hidden staging directory next to the others and
renamed to the next free integer (`iclrec_tf.files`), so TF Serving never sees
a half-written version, and every file is readable by a server running as
another user.
"""

import pathlib

import tensorflow as tf

from iclrec_tf import files
from iclrec_tf.errors import ConfigError, RunDirectoryError
from iclrec_tf.serve.module import add_item_names, serving_module

# The key `SequenceEncoder.item_embeddings` has in a `RunDirectory` checkpoint.
ITEM_EMBEDDINGS_KEY = "encoder/item_embeddings/embeddings/.ATTRIBUTES/VARIABLE_VALUE"


def next_version(model_dir):
    """One more than the largest integer-named entry of `model_dir` (1 if none)."""
    versions = [int(p.name) for p in pathlib.Path(model_dir).iterdir() if p.name.isdigit()]
    return max(versions, default=0) + 1


# The run's settings, beside the graph: TF Serving's `assets.extra/` holds files a
# server carries with a version but never loads into it.
CONFIG_ASSET = pathlib.Path("assets.extra") / "config.json"


def export_saved_model(model, model_dir, top_k=100, keep_history=False, mask_id=None,
                       vocabulary=None, config=None):
    """Writes `model_dir/<next version>/`, a SavedModel with the serving signatures.

    The SavedModel is written into a hidden temporary directory inside
    `model_dir` and renamed to its version only when complete; a failure
    removes it. (A killed process may leave the temporary directory; TF
    Serving ignores names that are not integers.)

    Args:
      model: a built `ICLRecModel` with its trained weights.
      model_dir: the TF Serving base path of the model; created if missing.
      top_k: k of `serving_default`.
      keep_history: whether `serving_default` may recommend the request's ids.
      mask_id: the mask id (default `item_size - 1`).
      vocabulary: the raw item ids (`items.txt`), or None. With them,
        `serving_default` speaks raw string ids (`add_item_names`) and the
        integer one is `serving_item_ids`.
      config: the run's `TrainConfig`, or None. With it, the version holds
        its settings (the encoder among them) as `assets.extra/config.json`,
        which `fit --config` reads.

    Returns:
      The `pathlib.Path` of the version directory written.

    Raises:
      ConfigError: a bad `top_k`, a vocabulary shorter than the model's
        items, or a `model_dir` that cannot be written.
    """
    module = serving_module(model, top_k, keep_history, mask_id)
    signatures = {"serving_default": module.recommend, "encode": module.encode}
    if vocabulary is not None:
        add_item_names(module, vocabulary, model.encoder.encoder_config.item_size - 2)
        signatures.update(serving_default=module.recommend_names,
                          serving_item_ids=module.recommend)
    if hasattr(module, "intent"):
        signatures["intent"] = module.intent
    model_dir = pathlib.Path(model_dir)
    try:
        staging = files.StagedDirectory(model_dir, "export")
    except OSError as error:
        raise ConfigError(f"--model-dir {model_dir}: not writable ({error.strerror})") from None
    with staging:
        tf.saved_model.save(module, str(staging.path), signatures=signatures)
        if config is not None:
            (staging.path / CONFIG_ASSET.parent).mkdir()
            (staging.path / CONFIG_ASSET).write_text(config.to_json() + "\n")
        while True:
            version_dir = model_dir / str(next_version(model_dir))
            try:
                staging.publish(version_dir)
                return version_dir
            except FileExistsError:
                continue  # another export took this version since next_version


def checkpoint_item_size(weights_prefix):
    """The vocabulary size recorded in a `RunDirectory` checkpoint."""
    shapes = tf.train.load_checkpoint(weights_prefix).get_variable_to_shape_map()
    if ITEM_EMBEDDINGS_KEY not in shapes:
        raise RunDirectoryError(f"{weights_prefix}: the checkpoint has no item embeddings")
    return shapes[ITEM_EMBEDDINGS_KEY][0]
