import subprocess
import sys

from conftest import REPO


def _python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def test_tf_keras_is_keras_2_and_tfrs_imports_beside_it():
    result = _python(
        "import iclrec_tf, tensorflow as tf, tf_keras, tensorflow_recommenders as tfrs\n"
        "assert tf.keras.__name__.startswith('tf_keras'), tf.keras.__name__\n"
        "assert tf.keras.layers.Dense is tf_keras.layers.Dense\n"
        "print(tfrs.layers.factorized_top_k.BruteForce.__name__)\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("BruteForce")


def test_import_after_tensorflow_under_legacy_keras_is_accepted():
    result = _python(
        "import os; os.environ['TF_USE_LEGACY_KERAS'] = '1'\n"
        "import tensorflow as tf; tf.keras.layers\n"
        "import iclrec_tf, tf_keras\n"
        "assert tf.keras.layers.Dense is tf_keras.layers.Dense\n")
    assert result.returncode == 0, result.stderr[-2000:]


def test_import_after_keras_3_fails_with_a_clear_message():
    result = _python(
        "import os; os.environ.pop('TF_USE_LEGACY_KERAS', None)\n"
        "import tensorflow as tf; tf.keras.layers\n"
        "import iclrec_tf\n")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ImportError: iclrec_tf needs Keras 2")
    assert "Import iclrec_tf before tensorflow" in last_line
