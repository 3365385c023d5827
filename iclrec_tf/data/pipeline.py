"""tf.data pipelines: training batches, E-step inputs, and valid/test inputs.

Everything per batch is a TensorFlow op (no `py_function`, no numpy): the
dataset yields shuffled user indices, and one vectorized map gathers their
sequences, samples negatives and draws two augmented views. Training batches
depend on (seed, epoch) only, so an interrupted run resumes into the same
batches.

A training sample is a user (`train_samples="users"`: the train input, with a
next-item target at every position, as SASRec and the reference train) or a
prefix of one (`"prefixes"`: the first m items of a user's train input and the
item after them, the target at the last position only, for every m, as ICSRec,
DuoRec and RecBole train). Both have the same (input, next item) pairs; with
prefixes, every target is predicted where inference predicts, at the last
position, and an epoch has one sample per target instead of one per user.

With `length_buckets`, a batch is cut to its own longest sequence. Training
batches stay random (the model then encodes each user's rows only as wide as
its input: `iclrec_tf.model.encoder.encode_by_length`), so that the objective
is the padded one's; E-step and evaluation batches go in length order, which
their results do not depend on, so that most of them are narrow: on these
datasets nine positions in ten of a 50-wide batch are padding.
"""

import numpy as np
import tensorflow as tf

from iclrec_tf.config import TRAIN_SAMPLES
from iclrec_tf.data import augment
from iclrec_tf.data.windows import last_items, last_window


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
      train_samples: `users` or `prefixes` (see the module docstring).

    Example:
      >>> pipelines = SequencePipelines(load_sequences(path), max_len=50)
      >>> train = pipelines.train(batch_size=256, seed=1, augmentation="random",
      ...                         ratios={"crop": 0.2, "mask": 0.7, "reorder": 0.2})
      >>> model.fit(train, epochs=10, steps_per_epoch=pipelines.steps_per_epoch(256))
    """

    def __init__(self, data, max_len, train_samples="users"):
        if train_samples not in TRAIN_SAMPLES:
            raise ValueError(f"train_samples must be one of {TRAIN_SAMPLES}, got "
                             f"{train_samples!r}")
        self.data = data
        self.max_len = max_len
        self.train_samples = train_samples
        starts, ends = data.row_splits[:-1], data.row_splits[1:]
        # input items[:-3], target items[1:-2]: position p's target follows its input
        self._train_inputs = last_window(data.items, starts, ends - 3, max_len)
        self._train_targets = last_window(data.items, starts + 1, ends - 2, max_len)
        self._train_widths = self.widths(drop_last=3)
        if train_samples == "prefixes":
            # Sample (u, m), m = 1 .. len(train input): user u's first m items, then
            # the item after them. Only [num_samples] vectors are kept: the inputs
            # are cut per batch, so a log of millions of interactions fits.
            per_user = data.lengths - 3
            first_sample = np.repeat(np.cumsum(per_user) - per_user, per_user)
            self._sample_users = np.repeat(np.arange(data.num_users), per_user)
            self._prefix_lengths = (np.arange(per_user.sum()) - first_sample + 1).astype(np.int32)
            self._prefix_targets = data.items[starts[self._sample_users]
                                              + self._prefix_lengths].astype(np.int32)

    def widths(self, drop_last):
        """[num_users] positions each user's input fills: its length less `drop_last`,
        at most `max_len` (at least 1: every user has 4 items or more)."""
        return np.minimum(self.data.lengths - drop_last, self.max_len).astype(np.int32)

    @property
    def num_users(self):
        return self.data.num_users

    @property
    def num_samples(self):
        """Training samples per epoch: users, or all users' prefixes."""
        if self.train_samples == "prefixes":
            return len(self._sample_users)
        return self.num_users

    def train_inputs(self):
        """[num_users, max_len] each user's left-padded train input."""
        return self._train_inputs

    def target_counts(self):
        """[item_size] how often each id is a next-item target in the training batches."""
        if self.train_samples == "prefixes":
            targets = self._prefix_targets
        else:
            targets = self._train_targets[self._train_targets > 0]
        return np.bincount(targets, minlength=self.data.item_size)

    def steps_per_epoch(self, batch_size):
        """Training batches per epoch: every sample once, the last batch smaller."""
        return -(-self.num_samples // batch_size)

    def train(self, batch_size, seed, augmentation, ratios, first_epoch=0,
              length_buckets=False, negatives=True, num_sampled=0, views="augmented"):
        """The training pipeline: epoch after epoch, reshuffled and re-augmented.

        Epoch e's batches (order, negatives, views) are a function of `seed` and
        e alone, not of how many epochs this process has already iterated, so a
        run resumed at epoch e sees exactly the batches it would have seen
        without the interruption. The dataset is endless: give `model.fit` its
        `steps_per_epoch`.

        Args:
          batch_size: samples per batch (each epoch's last batch may be smaller).
          seed: shuffling, negatives and augmentations follow from it.
          augmentation: `random`, `crop`, `mask`, `reorder` or `none`.
          ratios: dict with the `crop`, `mask` and `reorder` ratios.
          first_epoch: the epoch (0-based) the dataset starts at.
          length_buckets: cut each batch to its longest sequence (see the
            module docstring).
          negatives: draw `target_neg`, the one negative per position of the
            BCE loss.
          num_sampled: draw this many item ids uniformly per batch,
            `sampled_items` [num_sampled], the sampled softmax's negatives.
          views: `augmented` (two augmentations of the sample's input, the
            paper's) or `same_target` (with prefixes: the input itself, and
            another prefix with the same next item, ICSRec's and DuoRec's
            supervised positive).

        Returns:
          A dataset of dicts, each [batch, max_len] int32 ([batch, width] with
          `length_buckets`): `input_ids`, `target_pos` (with prefixes, 0 but in
          the last column), `target_neg` (0 where the target is padding),
          `view_1` and `view_2` (by `views`; an augmented view is of the
          sample's own input, the prefix for a prefix); and `sampled_items`.
        """
        if views == "same_target" and self.train_samples != "prefixes":
            raise ValueError("same_target views need prefix samples: a user has no one "
                             "next item")
        data = self.data
        full = tf.RaggedTensor.from_row_splits(
            tf.constant(data.items, tf.int32), tf.constant(data.row_splits))
        train_values, train_splits = data.prefixes(drop_last=3)
        train_full = tf.RaggedTensor.from_row_splits(
            tf.constant(train_values, tf.int32), tf.constant(train_splits))
        item_size, max_len = data.item_size, self.max_len
        num_samples = self.num_samples
        samples_are_prefixes = self.train_samples == "prefixes"
        if samples_are_prefixes:
            sample_users = tf.constant(self._sample_users, tf.int64)
            prefix_lengths = tf.constant(self._prefix_lengths)
            prefix_targets = tf.constant(self._prefix_targets)
        else:
            inputs = tf.constant(self._train_inputs)
            targets = tf.constant(self._train_targets)
            widths = tf.constant(self._train_widths)

        def epoch_batches(epoch):
            epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
            order = tf.random.experimental.stateless_shuffle(
                tf.range(num_samples, dtype=tf.int64), seed=epoch_seed)
            samples = tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
            return samples.enumerate().map(lambda index, batch_samples: (
                batch_samples, tf.random.experimental.stateless_fold_in(epoch_seed, index)))

        def user_rows(users):
            """Inputs, targets and the whole train inputs (with lengths) of users."""
            sequences = tf.gather(train_full, users)
            lengths = tf.cast(sequences.row_lengths(), tf.int32)
            return (tf.gather(inputs, users), tf.gather(targets, users),
                    sequences.to_tensor(), lengths, tf.reduce_max(tf.gather(widths, users)))

        def prefix_inputs(samples):
            """Users, inputs, cut train inputs, lengths and width of prefix samples."""
            users = tf.gather(sample_users, samples)
            lengths = tf.gather(prefix_lengths, samples)
            sequences = tf.gather(train_full, users).to_tensor()
            past_the_cut = tf.range(tf.shape(sequences)[1])[None, :] >= lengths[:, None]
            sequences = tf.where(past_the_cut, tf.zeros_like(sequences), sequences)
            return (users, last_items(sequences, lengths, max_len), sequences, lengths,
                    tf.minimum(tf.reduce_max(lengths), max_len))

        if views == "same_target":
            partners_of = self._same_target_partners()

        def make_batch(samples, batch_seed):
            negative_seed, view_seed_1, view_seed_2 = tf.unstack(
                tf.random.experimental.stateless_split(batch_seed, 3))
            if samples_are_prefixes:
                users, input_ids, sequences, lengths, width = prefix_inputs(samples)
                target_pos = tf.pad(tf.gather(prefix_targets, samples)[:, None],
                                    [[0, 0], [max_len - 1, 0]])
            else:
                users = samples
                input_ids, target_pos, sequences, lengths, width = user_rows(users)
            batch = {"input_ids": input_ids, "target_pos": target_pos}
            if views == "same_target":
                _, partner_ids, _, _, partner_width = prefix_inputs(
                    partners_of(samples, view_seed_2))
                batch["view_1"], batch["view_2"] = input_ids, partner_ids
                width = tf.maximum(width, partner_width)
            else:
                for name, view_seed in (("view_1", view_seed_1), ("view_2", view_seed_2)):
                    batch[name] = augment.augmented_view(sequences, lengths, max_len,
                                                         augmentation, ratios, view_seed)
            if negatives:
                drawn = sample_negatives(tf.gather(full, users).to_tensor(),
                                         tf.shape(target_pos), item_size, negative_seed)
                batch["target_neg"] = tf.where(target_pos > 0, drawn, 0)
            if length_buckets:
                # No row is wider than `width` (an augmented view is no longer than its
                # input): the columns cut are padding in all.
                batch = {name: ids[:, max_len - width:] for name, ids in batch.items()}
            if num_sampled:
                uniform = tf.random.stateless_uniform(
                    [num_sampled], tf.random.experimental.stateless_fold_in(batch_seed, 3),
                    dtype=tf.float64)
                # Ids 1 .. item_size - 2: neither padding nor the mask id.
                batch["sampled_items"] = 1 + tf.cast(tf.floor(uniform * (item_size - 2)),
                                                     tf.int32)
            return batch

        return (tf.data.Dataset.counter(first_epoch).flat_map(epoch_batches)
                .map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .prefetch(tf.data.AUTOTUNE))

    def _same_target_partners(self):
        """A function (samples, seed) -> for each prefix sample, another sample with the
        same next item drawn uniformly (from any user), or itself if it has none."""
        by_target = np.argsort(self._prefix_targets, kind="stable")
        sorted_targets = self._prefix_targets[by_target]
        rank = np.empty_like(by_target)
        rank[by_target] = np.arange(len(by_target))
        group_start = np.searchsorted(sorted_targets, self._prefix_targets, side="left")
        group_size = np.searchsorted(sorted_targets, self._prefix_targets,
                                     side="right") - group_start
        by_target, rank, group_start, group_size = (
            tf.constant(array, tf.int64) for array in (by_target, rank, group_start, group_size))

        def partners(samples, seed):
            start, size = tf.gather(group_start, samples), tf.gather(group_size, samples)
            own = tf.gather(rank, samples)
            uniform = tf.random.stateless_uniform(tf.shape(samples), seed, dtype=tf.float64)
            offset = tf.cast(tf.floor(uniform * tf.cast(tf.maximum(size - 1, 1), tf.float64)),
                             tf.int64)
            other = start + offset
            other += tf.cast(other >= own, tf.int64)  # step over the sample itself
            return tf.gather(by_target, tf.where(size > 1, other, own))

        return partners

    def estep(self, batch_size, length_buckets=False):
        """All users' train inputs, no augmentation: [batch, max_len].

        In file order; with `length_buckets`, in length order, each batch
        [batch, width] as wide as its longest input.
        """
        if not length_buckets:
            return tf.data.Dataset.from_tensor_slices(self._train_inputs).batch(batch_size)
        return self._length_bucketed({"input_ids": self._train_inputs}, self._train_widths,
                                     batch_size).map(lambda batch: batch["input_ids"])

    def _length_bucketed(self, columns, widths, batch_size):
        """Batches of `columns` in order of `widths`, `input_ids` cut to the batch's widest."""
        order = np.argsort(widths, kind="stable")
        columns = {name: (values[order] if isinstance(values, np.ndarray)
                          else tf.gather(values, order))
                   for name, values in columns.items()}
        max_len = self.max_len

        def trim(batch):
            width = tf.reduce_max(batch.pop("width"))
            return {**batch, "input_ids": batch["input_ids"][:, max_len - width:]}

        return (tf.data.Dataset.from_tensor_slices({**columns, "width": widths[order]})
                .batch(batch_size).map(trim))

    def evaluation(self, split, batch_size, length_buckets=False, inputs=None):
        """Inputs, answers and histories for full-ranking evaluation.

        Args:
          split: `valid` (input `items[:-2]`) or `test` (input `items[:-1]`).
          batch_size: users per batch.
          length_buckets: users in length order, `input_ids` [batch, width] as
            wide as the batch's longest input. Exact: the last position's
            scores do not depend on left padding.
          inputs: `(values, row_splits)`, every user's input in place of the
            split's own (`iclrec_tf.data.noise.noisy_inputs`); the answers and
            the histories stay the split's.

        Returns:
          A dataset of dicts: `input_ids` [batch, max_len], `answer` [batch],
          `history` [batch, None] (ragged: the whole clean input, not just its
          window), and `user` [batch], each row's index in `data`.
        """
        drop = {"valid": 2, "test": 1}[split]
        data = self.data
        values, splits = data.prefixes(drop_last=drop)
        history = tf.RaggedTensor.from_row_splits(values.astype(np.int32), splits)
        if inputs is not None:
            values, splits = inputs
        windows = last_window(values, splits[:-1], splits[1:], self.max_len)
        columns = {"input_ids": windows, "answer": data.answers(split).astype(np.int32),
                   "history": history, "user": np.arange(data.num_users)}
        if length_buckets:
            widths = np.minimum(np.diff(splits), self.max_len).astype(np.int32)
            dataset = self._length_bucketed(columns, widths, batch_size)
        else:
            dataset = tf.data.Dataset.from_tensor_slices(columns).batch(batch_size)
        return dataset.prefetch(tf.data.AUTOTUNE)
