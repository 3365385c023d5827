"""The Keras model and its losses: `kernels` (CPU kernels), `encoder` (the SASRec
architecture, and the choice of blocks), `fourier` and `filter` (the other encoders'
blocks, docs/encoders.md), `replicas` (batch-global reductions under tf.distribute), `tasks`
(the losses), `iclrec` (the model and its `train_step`) and `reference` (the
reference implementation's released weights).
"""
