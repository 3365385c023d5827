"""Raw interaction logs -> dataset files `fit` trains on; imports no TensorFlow.

`events` reads a log into integer codes (`idcoder` codes its string ids),
`partitions` keeps the events on disk split by user, `kcore` drops duplicates
and applies the k-core, `write` orders and writes the dataset, and `run`
drives the steps (`python pipelines/prepare.py`, see `cli`).
"""
