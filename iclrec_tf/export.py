"""`python -m iclrec_tf.export`: a trained run as a SavedModel for TF Serving.

The export is a plain `tf.Module` that tracks the model's variables, not its
Keras objects, so loading it needs TensorFlow alone (no `iclrec_tf`, `tf_keras`
or `tensorflow_recommenders`). Every signature takes one input, `item_ids`:
int64 `[batch, any length]`, the user's history oldest first, 0 for padding
(anywhere: left- or right-padded rows of a batch are both fine). The last
`max_len` non-zero ids are encoded; older ones only count as history.

- `serving_default`: `item_ids` int64 `[batch, k]` and `scores` float32
  `[batch, k]`, the top-k of `h_last . E^T` without the padding id, the mask
  id and (unless `keep_history`) the ids of the request. A slot left without
  a candidate (a history covering almost the whole catalogue) holds id -1 and
  score -inf.
- `encode`: `embedding` float32 `[batch, hidden]`, the `h_last` scored above.
- `intent` (only for a model with fitted intents): `intent_id` int64 `[batch]`,
  the centroid `ICLRecModel.assign_intents` picks for the mean-pooled hidden
  states, and `probabilities` float32 `[batch, K]`, a softmax over the negative
  squared L2 distances to the centroids, whose argmax is `intent_id`.

A run trained on a dataset from `pipelines/prepare.py` has `items.txt` (its
raw item ids). Its `serving_default` then takes and returns those raw ids,
tf.string (`add_item_names`), and the integer one above is `serving_item_ids`;
`encode` and `intent` stay integer.

A version is written to a temporary directory next to the others and renamed
to the next free integer, so TF Serving never sees a half-written version.
"""

import errno
import os
import pathlib
import shutil
import sys
import tempfile

import tensorflow as tf

from iclrec_tf import cli
from iclrec_tf.config import ConfigError, check_top_k
from iclrec_tf.model import build_model, sequence_representation
from iclrec_tf.rundir import RunDirectory, RunDirectoryError
from iclrec_tf.vocabulary import run_vocabulary

ITEM_IDS = tf.TensorSpec([None, None], tf.int64, name="item_ids")
ITEM_NAMES = tf.TensorSpec([None, None], tf.string, name="item_ids")
# The key `SequenceEncoder.item_embeddings` has in a `RunDirectory` checkpoint.
ITEM_EMBEDDINGS_KEY = "encoder/item_embeddings/embeddings/.ATTRIBUTES/VARIABLE_VALUE"
# Histories are short (Toys: median 5 items), so encoding each row at the
# narrowest of these widths, not at max_len, saves most of the encoder's work.
BUCKET_WIDTHS = (8, 16, 32)
# `pruned_top_k` deals each row's scores into about this many groups per
# recommendation (Toys, k = 100: 412 groups of 29); 2 and 8 measured close.
GROUPS_PER_K = 4


def recent_window(item_ids, max_len):
    """The last `max_len` non-zero ids of each row, right-aligned, 0 before.

    Args:
      item_ids: [batch, any length] int64, 0 anywhere as padding.
      max_len: the window width.

    Returns:
      [batch, max_len] int64 window and [batch] int64 number of items in it.
    """
    is_item = item_ids > 0
    # 0 for a row's most recent item, 1 for the one before, ...
    age = tf.cumsum(tf.cast(is_item, tf.int64), axis=1, reverse=True) - 1
    kept = tf.where(is_item & (age < max_len))  # (n, 2): row, column
    targets = tf.stack([kept[:, 0], max_len - 1 - tf.gather_nd(age, kept)], axis=1)
    batch = tf.shape(item_ids, out_type=tf.int64)[0]
    window = tf.scatter_nd(targets, tf.gather_nd(item_ids, kept), [batch, max_len])
    return window, tf.minimum(tf.reduce_sum(tf.cast(is_item, tf.int64), axis=1), max_len)


def last_hidden(encoder, window, lengths):
    """[batch, hidden] inference hidden state at the last position of `window`.

    Rows are grouped by length and each group is encoded at the narrowest of
    `BUCKET_WIDTHS` (or `max_len`) that holds it. An empty row is encoded at
    full width: its output depends on the width, and this keeps it equal to
    the model's.

    Args:
      encoder: a `SequenceEncoder`.
      window: [batch, max_len] int64 from `recent_window`.
      lengths: [batch] int64 items in each row of `window`.
    """
    max_len = encoder.max_len
    widths = [w for w in BUCKET_WIDTHS if w < max_len] + [max_len]
    lengths = tf.where(lengths > 0, lengths, max_len)
    # The number of widths a row is longer than: the index of the first that holds it.
    bucket = tf.reduce_sum(
        tf.cast(lengths[:, None] > tf.constant(widths[:-1], tf.int64)[None, :], tf.int32), axis=1)
    rows = tf.dynamic_partition(tf.range(tf.shape(window)[0]), bucket, len(widths))
    parts = tf.dynamic_partition(window, bucket, len(widths))
    empty = tf.zeros([0, encoder.hidden_size])
    # The cond skips the ~300 ops of an empty group: most of a small batch's latency.
    hidden = [tf.cond(tf.size(part) > 0,
                      # The last position sees no padding: trimming it is exact.
                      lambda part=part, width=width: encoder(
                          part[:, max_len - width:], training=False,
                          last_position_only=True)[:, -1, :],
                      lambda: empty)
              for part, width in zip(parts, widths, strict=True)]
    return tf.dynamic_stitch(rows, hidden)


def _checked(item_ids, item_size):
    """`item_ids`, failing the request in its own terms if an id is not in the vocabulary."""
    known = tf.reduce_all((item_ids >= 0) & (item_ids < item_size))
    check = tf.debugging.Assert(known, [f"item_ids must be in 0..{item_size - 1} (0 is padding)"])
    with tf.control_dependencies([check]):
        return tf.identity(item_ids)


def group_threshold(maxima, k, steps=8):
    """[batch, 1] a value with at least k of each row's `maxima` at or above it.

    Bisects between the smallest finite and the largest maximum, then rounds
    up to the smallest maximum at or above the result: close to the k-th largest,
    which `tf.math.top_k` would find at several times the cost. A row that
    has fewer than k finite maxima gets -inf.

    Args:
      maxima: [batch, groups] float32, groups >= k, no NaN (-inf is fine).
      k: a Python int.
      steps: bisection steps; more give a tighter value, never a wrong one.
    """
    def enough(value):
        return tf.reduce_sum(tf.cast(maxima >= value, tf.int32), axis=1, keepdims=True) >= k

    high = tf.reduce_max(maxima, axis=1, keepdims=True)
    low = tf.reduce_min(tf.where(tf.math.is_finite(maxima), maxima, high), axis=1, keepdims=True)
    for _ in range(steps):
        middle = (low + high) / 2
        below = enough(middle)
        low, high = tf.where(below, middle, low), tf.where(below, high, middle)
    low = tf.reduce_min(tf.where(maxima >= low, maxima, float("inf")), axis=1, keepdims=True)
    # The check, not the bisection, is what makes the value right.
    return tf.where(enough(low), low, float("-inf"))


def pruned_top_k(scores, k):
    """`tf.math.top_k(scores, k)`, found among the few scores that can be in it.

    `TopKV2` costs about 5 ns per score on CPU: most of the scoring time at
    batch 256 over Toys' 11,926 items. Here the columns are dealt into about
    `GROUPS_PER_K * k` groups (column `c` to group `c % groups`), and `t` is
    a value with at least k group maxima at or above it (`group_threshold`),
    hence at least k scores: the top-k are all `>= t`, about 160 of the 11,926
    on Toys. Those are packed, in column order, into a `[batch, width]` matrix
    padded with -inf, and its `tf.math.top_k` is the answer, ties included
    (the lower column first, as `tf.math.top_k`). A row with fewer than k
    finite group maxima keeps all its scores.

    Args:
      scores: [batch, n] float32, no NaN (-inf is fine); n known when traced.
      k: a Python int, 1 <= k <= n.

    Returns:
      values [batch, k] float32 and indices [batch, k] int32, sorted, equal to
      those of `tf.math.top_k(scores, k)`.
    """
    n = scores.shape[-1]
    size = n // (GROUPS_PER_K * k)
    if size < 2:  # a group of one score prunes nothing
        top = tf.math.top_k(scores, k)
        return top.values, top.indices
    groups = -(-n // size)
    batch = tf.shape(scores, out_type=tf.int64)[0]
    padded = tf.pad(scores, [[0, 0], [0, groups * size - n]], constant_values=float("-inf"))
    # Strided groups: a max over the middle axis vectorises, one over a short last axis does not.
    maxima = tf.reduce_max(tf.reshape(padded, [batch, size, groups]), axis=1)  # (B, groups)
    kept = tf.where(scores >= group_threshold(maxima, k))  # (m, 2): row, column; row-major
    columns = tf.RaggedTensor.from_value_rowids(tf.cast(kept[:, 1], tf.int32), kept[:, 0],
                                                nrows=batch)
    lengths = columns.row_lengths()
    # At least k wide: a batch of 0 rows keeps nothing.
    width = tf.maximum(tf.reduce_max(lengths), tf.constant(k, tf.int64))
    columns = columns.to_tensor(shape=[batch, width])
    values = tf.where(tf.sequence_mask(lengths, width),
                      tf.gather(scores, columns, batch_dims=1), float("-inf"))
    top = tf.math.top_k(values, k)
    return top.values, tf.gather(columns, top.indices, batch_dims=1)


def serving_module(model, top_k=100, keep_history=False, mask_id=None):
    """A `tf.Module` with the serving functions of a trained `ICLRecModel`.

    Args:
      model: a built `ICLRecModel` with its trained weights.
      top_k: k, the number of recommendations per request row.
      keep_history: whether the request's own ids may be recommended.
      mask_id: the mask id, never recommended; default `item_size - 1`, the id
        `SequenceData.mask_id` assigns.

    Returns:
      A `tf.Module` with `recommend`, `encode` and, if the model's intents
      are fitted, `intent`: `tf.function`s of one `ITEM_IDS` argument.

    Raises:
      ConfigError: when `top_k` is not between 1 and the number of items.
    """
    encoder = model.encoder
    item_size, max_len = encoder.item_size, encoder.max_len
    mask_id = item_size - 1 if mask_id is None else mask_id
    num_items = item_size - len({0, mask_id})
    check_top_k(top_k, num_items)
    never = tf.constant([[0, mask_id]], tf.int64)

    module = tf.Module(name="iclrec_serving")
    # Tracking the variables, not the Keras layers, keeps Keras out of the SavedModel.
    module.encoder_variables = list(encoder.variables)

    @tf.function(input_signature=[ITEM_IDS])
    def encode(item_ids):
        window, lengths = recent_window(_checked(item_ids, item_size), max_len)
        return {"embedding": last_hidden(encoder, window, lengths)}

    @tf.function(input_signature=[ITEM_IDS])
    def recommend(item_ids):
        embedding = encode(item_ids)["embedding"]
        scores = tf.matmul(embedding, encoder.embedding_table, transpose_b=True)
        batch = tf.shape(item_ids, out_type=tf.int64)[0]
        # Positions in the flattened [batch * item_size] scores.
        flat = tf.reshape(never + tf.range(batch)[:, None] * item_size, [-1])
        if not keep_history:
            history = tf.where(item_ids > 0)  # (h, 2): row, position; padding is already out
            flat = tf.concat([flat, history[:, 0] * item_size + tf.gather_nd(item_ids, history)],
                             axis=0)
        flat = flat[:, None]
        # Removed (-inf), not zero-scored as the reference protocol does: at 0 they
        # would outrank every item with a negative score.
        scores = tf.reshape(tf.tensor_scatter_nd_update(
            tf.reshape(scores, [-1]), flat, tf.fill(tf.shape(flat)[:1], float("-inf"))),
            [batch, item_size])
        values, indices = pruned_top_k(scores, top_k)
        ids = tf.where(values == float("-inf"), tf.constant(-1, tf.int64),
                       tf.cast(indices, tf.int64))
        return {"item_ids": ids, "scores": values}

    module.encode = encode
    module.recommend = recommend
    if bool(model.intents_ready.numpy()):
        @tf.function(input_signature=[ITEM_IDS])
        def intent(item_ids):
            window, _ = recent_window(_checked(item_ids, item_size), max_len)
            representation = sequence_representation(model(window, training=False))
            distances = model.intent_distances(representation)
            return {"intent_id": tf.cast(model.assign_intents(representation), tf.int64),
                    "probabilities": tf.nn.softmax(-distances, axis=1)}

        module.intent_centroids = model.intent_centroids
        module.intent = intent
    return module


def add_item_names(module, vocabulary, num_items):
    """Gives `module` `recommend_names`: `recommend` in raw string item ids.

    The vocabulary is a `tf.lookup.StaticHashTable` built from constants, so it
    is inside the SavedModel: TF Serving needs no asset file beside it.

    Args:
      module: a `serving_module`; its `recommend` is wrapped, not copied.
      vocabulary: list of str, `vocabulary[i - 1]` the raw id of item `i`
        (`items.txt`); ids beyond `num_items` are not served.
      num_items: the largest item id of the model (`item_size - 2`).

    Returns:
      `module`, with `recommend_names`, a `tf.function` of `item_ids`, tf.string
      `[batch, any length]` ("" for padding), returning `item_ids` tf.string
      `[batch, k]` ("" in a slot without a candidate), `scores` float32
      `[batch, k]` and `unknown_ids` int64 `[batch]`: the request's non-empty
      ids the vocabulary does not hold, ignored as padding is.

    Raises:
      ConfigError: the vocabulary has fewer ids than the model has items.
    """
    if len(vocabulary) < num_items:
        raise ConfigError(f"items.txt has {len(vocabulary)} ids, the model has {num_items} items")
    names = tf.constant(["", *vocabulary[:num_items]])  # index = item id; 0 is padding
    module.item_table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(names[1:],
                                            tf.range(1, num_items + 1, dtype=tf.int64)),
        default_value=-1)
    recommend = module.recommend

    @tf.function(input_signature=[ITEM_NAMES])
    def recommend_names(item_ids):
        ids = module.item_table.lookup(item_ids)
        unknown = tf.reduce_sum(tf.cast((ids < 0) & (item_ids != ""), tf.int64), axis=1)
        outputs = recommend(tf.maximum(ids, 0))  # unknown -> 0, as padding
        # -1 marks a slot without a candidate; "" is the string id of nothing.
        found = tf.gather(names, tf.maximum(outputs["item_ids"], 0))
        return {"item_ids": tf.where(outputs["item_ids"] > 0, found, ""),
                "scores": outputs["scores"], "unknown_ids": unknown}

    module.recommend_names = recommend_names
    return module


def next_version(model_dir):
    """One more than the largest integer-named entry of `model_dir` (1 if none)."""
    versions = [int(p.name) for p in pathlib.Path(model_dir).iterdir() if p.name.isdigit()]
    return max(versions, default=0) + 1


def export_saved_model(model, model_dir, top_k=100, keep_history=False, mask_id=None,
                       vocabulary=None):
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

    Returns:
      The `pathlib.Path` of the version directory written.

    Raises:
      ConfigError: a bad `top_k`, a vocabulary shorter than the model's
        items, or a `model_dir` that cannot be written.
    """
    module = serving_module(model, top_k, keep_history, mask_id)
    signatures = {"serving_default": module.recommend, "encode": module.encode}
    if vocabulary is not None:
        add_item_names(module, vocabulary, model.encoder.item_size - 2)
        signatures.update(serving_default=module.recommend_names,
                          serving_item_ids=module.recommend)
    if hasattr(module, "intent"):
        signatures["intent"] = module.intent
    model_dir = pathlib.Path(model_dir)
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        staging = pathlib.Path(tempfile.mkdtemp(dir=model_dir, prefix=".export-"))
    except OSError as error:
        raise ConfigError(f"--model-dir {model_dir}: not writable ({error.strerror})") from None
    try:
        tf.saved_model.save(module, str(staging), signatures=signatures)
        while True:
            version_dir = model_dir / str(next_version(model_dir))
            try:
                # Fails if another export took this version since next_version.
                os.rename(staging, version_dir)
                return version_dir
            except OSError as error:
                if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def checkpoint_item_size(weights_prefix):
    """The vocabulary size recorded in a `RunDirectory` checkpoint."""
    shapes = tf.train.load_checkpoint(weights_prefix).get_variable_to_shape_map()
    if ITEM_EMBEDDINGS_KEY not in shapes:
        raise RunDirectoryError(f"{weights_prefix}: the checkpoint has no item embeddings")
    return shapes[ITEM_EMBEDDINGS_KEY][0]


def build_parser():
    parser = cli.ArgumentParser(
        prog="python -m iclrec_tf.export",
        description="Export a trained run as a SavedModel version for TF Serving.")
    parser.add_argument("--run", required=True, help="a run directory written by iclrec_tf.fit")
    parser.add_argument("--model-dir", required=True,
                        help="the TF Serving model base path, e.g. saved_models/toys; the "
                        "export goes to its next free version number")
    parser.add_argument("--top-k", type=int, default=100,
                        help="recommendations per user in serving_default (default 100)")
    parser.add_argument("--keep-history", action="store_true",
                        help="allow recommending the request's own items (repeat consumption)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    run_dir = RunDirectory(args.run)
    config = run_dir.config()
    weights = run_dir.weights_prefix()
    model = build_model(config, checkpoint_item_size(weights))
    model.load_weights(weights).expect_partial()
    version_dir = export_saved_model(model, args.model_dir, args.top_k, args.keep_history,
                                     vocabulary=run_vocabulary(run_dir))
    if not model.intents_ready.numpy():
        print(f"{args.run} fitted no intents (contrast type {config.contrast_type!r}): "
              "the export has no intent signature", file=sys.stderr)
    print(version_dir, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "python -m iclrec_tf.export"))
