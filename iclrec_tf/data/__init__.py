"""Dataset files -> tf.data: `datasets` (lookup, parsing, leave-one-out),
`vocabulary` (`items.txt`), `windows` (right-aligned windows), `augment`
(crop, mask, reorder) and `pipeline` (training, E-step and evaluation batches).

`datasets` and `vocabulary` import no TensorFlow: preparation reads their formats.
"""
