"""ICLRec (Intent Contrastive Learning for Sequential Recommendation) on TensorFlow.

Importing this package selects Keras 2 (`tf_keras`) for the whole process:
tensorflow-recommenders 0.7 refuses to import under Keras 3, so
`TF_USE_LEGACY_KERAS=1` must be set before TensorFlow is first imported.
"""

import os
import sys

__version__ = "0.1.0"


def _select_legacy_keras():
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is None:
        return
    # TensorFlow was imported first. `tf.keras` resolves lazily, so the
    # variable set above may still win; if Keras 3 was already bound, it cannot.
    bound = getattr(tensorflow.keras, "__name__", "")
    if not bound.startswith("tf_keras"):
        raise ImportError(
            "iclrec_tf needs Keras 2 (tf_keras), but TensorFlow was already "
            f"imported with Keras 3 ({bound}). Import iclrec_tf before tensorflow, "
            "or set TF_USE_LEGACY_KERAS=1 in the environment."
        )


_select_legacy_keras()
