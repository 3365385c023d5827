"""Raw interaction logs -> dataset files `fit` trains on; imports no TensorFlow.

`run` drives the steps (`python pipelines/prepare.py`, see `cli`): `logs`
finds and checks the user's files, `query` is the preparation in SQL, which
`duckdb_engine` (the default) or `spark_engine` runs, and `write` stages the
output. Guide: docs/own-data.md.
"""
