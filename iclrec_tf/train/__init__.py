"""Running a training: `run` assembles and runs it (the callback order lives
there), with `intents` (the E-step), `validation` and `metrics` (full ranking),
`resume` (per-epoch checkpoints), `monitoring` (TensorBoard), `distribute`
(strategies) and `rundir` (the run directory's files).
"""
