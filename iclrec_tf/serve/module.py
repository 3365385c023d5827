"""The serving signatures of a trained model, as a plain `tf.Module`.

The module tracks the model's variables, not its Keras objects, so loading its
SavedModel needs TensorFlow alone (no `iclrec_tf`, `tf_keras` or
`tensorflow_recommenders`). Every signature takes one input, `item_ids`:
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
  the centroid `ICLRecModel.assign_intents` picks for the pooled hidden
  states, and `probabilities` float32 `[batch, K]`, a softmax over the negative
  squared L2 distances to the centroids, whose argmax is `intent_id`.

A run trained on a dataset from `pipelines/prepare.py` has `items.txt` (its
raw item ids). Its `serving_default` then takes and returns those raw ids,
tf.string (`add_item_names`), and the integer one above is `serving_item_ids`;
`encode` and `intent` stay integer.
"""

import tensorflow as tf

from iclrec_tf.config import check_top_k
from iclrec_tf.errors import ConfigError
from iclrec_tf.model.encoder import encode_by_length
from iclrec_tf.serve.topk import pruned_top_k

ITEM_IDS = tf.TensorSpec([None, None], tf.int64, name="item_ids")

ITEM_NAMES = tf.TensorSpec([None, None], tf.string, name="item_ids")


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


def _checked(item_ids, item_size):
    """`item_ids`, failing the request in its own terms if an id is not in the vocabulary."""
    known = tf.reduce_all((item_ids >= 0) & (item_ids < item_size))
    check = tf.debugging.Assert(known, [f"item_ids must be in 0..{item_size - 1} (0 is padding)"])
    with tf.control_dependencies([check]):
        return tf.identity(item_ids)


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
    item_size, max_len = encoder.encoder_config.item_size, encoder.encoder_config.max_len
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
        # The last position sees no padding: encoding each row at its own width is exact.
        return {"embedding": encode_by_length(encoder, window, lengths,
                                              last_position_only=True)[:, -1, :]}

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
            representation = model.intent_representation(model(window, training=False), window)
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
