"""tf.data pipelines: training batches, E-step inputs, and valid/test inputs.

Everything per batch is a TensorFlow op (no `py_function`, no numpy): the
dataset yields shuffled user indices, and one vectorized map gathers their
sequences, samples negatives and draws two augmented views. Training batches
depend on (seed, epoch) only, so an interrupted run resumes into the same
batches.
"""

import numpy as np
import tensorflow as tf

from iclrec_tf.data import augment
from iclrec_tf.data.windows import last_window


def sample_negatives(histories, shape, item_size, seed):
    """Uniform item ids in `1 .. item_size - 1` that are not in the row's history.

    Args:
      histories: [batch, time] each user's whole sequence, 0-padded.
      shape: [batch, positions] shape of the sample.
      item_size: the vocabulary size (ids 0 .. item_size - 1).
      seed: [2] int stateless seed.

    Returns:
      [batch, positions] int32 negatives.
    """
    histories = tf.cast(histories, tf.int32)

    def draw(round_seed):
        uniform = tf.random.stateless_uniform(shape, round_seed, dtype=tf.float64)
        return 1 + tf.cast(tf.floor(uniform * (item_size - 1)), tf.int32)

    def collides(candidates):
        return tf.reduce_any(candidates[:, :, None] == histories[:, None, :], axis=-1)

    def redraw(round_index, candidates):
        round_seed = tf.random.experimental.stateless_fold_in(seed, round_index)
        candidates = tf.where(collides(candidates), draw(round_seed), candidates)
        return round_index + 1, candidates

    _, negatives = tf.while_loop(
        lambda _, candidates: tf.reduce_any(collides(candidates)),
        redraw,
        (tf.constant(1, tf.int64), draw(seed)),
    )
    return negatives


class SequencePipelines:
    """Builds the tf.data pipelines of one dataset.

    Args:
      data: a `SequenceData`.
      max_len: the encoder's sequence length.

    Example:

    >>> pipelines = SequencePipelines(load_sequences(path), max_len=50)
    >>> train = pipelines.train(batch_size=256, seed=1, augmentation="random",
    ...                         ratios={"crop": 0.2, "mask": 0.7, "reorder": 0.2})
    >>> model.fit(train, epochs=10, steps_per_epoch=pipelines.steps_per_epoch(256))
    """

    def __init__(self, data, max_len):
        self.data = data
        self.max_len = max_len
        starts, ends = data.row_splits[:-1], data.row_splits[1:]
        # input items[:-3], target items[1:-2]: position p's target follows its input
        self._train_inputs = last_window(data.items, starts, ends - 3, max_len)
        self._train_targets = last_window(data.items, starts + 1, ends - 2, max_len)

    @property
    def num_users(self):
        return self.data.num_users

    def train_inputs(self):
        """[num_users, max_len] each user's left-padded train input."""
        return self._train_inputs

    def steps_per_epoch(self, batch_size):
        """Training batches per epoch: every user once, the last batch smaller."""
        return -(-self.num_users // batch_size)

    def train(self, batch_size, seed, augmentation, ratios, first_epoch=0):
        """The training pipeline: epoch after epoch, reshuffled and re-augmented.

        Epoch e's batches (order, negatives, views) are a function of `seed` and
        e alone, not of how many epochs this process has already iterated, so a
        run resumed at epoch e sees exactly the batches it would have seen
        without the interruption. The dataset is endless: give `model.fit` its
        `steps_per_epoch`.

        Args:
          batch_size: users per batch (each epoch's last batch may be smaller).
          seed: shuffling, negatives and augmentations follow from it.
          augmentation: `random`, `crop`, `mask` or `reorder`.
          ratios: dict with the `crop`, `mask` and `reorder` ratios.
          first_epoch: the epoch (0-based) the dataset starts at.

        Returns:
          A dataset of dicts, each [batch, max_len] int32: `input_ids`,
          `target_pos`, `target_neg` (0 where the target is padding), `view_1`
          and `view_2`.
        """
        data = self.data
        full = tf.RaggedTensor.from_row_splits(
            tf.constant(data.items, tf.int32), tf.constant(data.row_splits))
        train_values, train_splits = data.prefixes(drop_last=3)
        train_full = tf.RaggedTensor.from_row_splits(
            tf.constant(train_values, tf.int32), tf.constant(train_splits))
        inputs = tf.constant(self._train_inputs)
        targets = tf.constant(self._train_targets)
        item_size, max_len, num_users = data.item_size, self.max_len, data.num_users

        def epoch_batches(epoch):
            epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
            order = tf.random.experimental.stateless_shuffle(
                tf.range(num_users, dtype=tf.int64), seed=epoch_seed)
            users = tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
            return users.enumerate().map(lambda index, batch_users: (
                batch_users, tf.random.experimental.stateless_fold_in(epoch_seed, index)))

        def make_batch(users, batch_seed):
            negative_seed, view_seed_1, view_seed_2 = tf.unstack(
                tf.random.experimental.stateless_split(batch_seed, 3))
            target_pos = tf.gather(targets, users)
            negatives = sample_negatives(
                tf.gather(full, users).to_tensor(), tf.shape(target_pos), item_size,
                negative_seed)
            sequences = tf.gather(train_full, users)
            lengths = tf.cast(sequences.row_lengths(), tf.int32)
            sequences = sequences.to_tensor()
            return {
                "input_ids": tf.gather(inputs, users),
                "target_pos": target_pos,
                "target_neg": tf.where(target_pos > 0, negatives, 0),
                "view_1": augment.augmented_view(sequences, lengths, max_len, augmentation,
                                                 ratios, view_seed_1),
                "view_2": augment.augmented_view(sequences, lengths, max_len, augmentation,
                                                 ratios, view_seed_2),
            }

        return (tf.data.Dataset.counter(first_epoch).flat_map(epoch_batches)
                .map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .prefetch(tf.data.AUTOTUNE))

    def estep(self, batch_size):
        """All users' train inputs in file order, no augmentation: [batch, max_len]."""
        return tf.data.Dataset.from_tensor_slices(self._train_inputs).batch(batch_size)

    def evaluation(self, split, batch_size):
        """Inputs, answers and histories for full-ranking evaluation.

        Args:
          split: `valid` (input `items[:-2]`) or `test` (input `items[:-1]`).
          batch_size: users per batch.

        Returns:
          A dataset of dicts: `input_ids` [batch, max_len], `answer` [batch], and
          `history` [batch, None] (ragged: the whole input, not just its window).
        """
        drop = {"valid": 2, "test": 1}[split]
        data = self.data
        inputs = last_window(data.items, data.row_splits[:-1], data.row_splits[1:] - drop,
                             self.max_len)
        values, splits = data.prefixes(drop_last=drop)
        history = tf.RaggedTensor.from_row_splits(values.astype(np.int32), splits)
        return tf.data.Dataset.from_tensor_slices({
            "input_ids": inputs,
            "answer": data.answers(split).astype(np.int32),
            "history": history,
        }).batch(batch_size).prefetch(tf.data.AUTOTUNE)
