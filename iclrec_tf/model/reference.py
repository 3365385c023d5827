"""Loading the reference implementation's released weights (`.npz`) into our encoder.

Arrays are named as the reference's PyTorch state dict; its dense weights are
stored [out, in] and become Keras kernels [in, out] by transposition.
"""

import pathlib
import re
import zipfile

import numpy as np

from iclrec_tf.errors import ReferenceWeightsError


def read_reference_weights(path):
    """The arrays of a released `.npz`, as a dict name -> array."""
    path = pathlib.Path(path)
    try:
        with np.load(path) as arrays:
            return {name: arrays[name] for name in arrays.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ReferenceWeightsError(f"{path}: not a readable .npz file ({error})") from None


def reference_shape(arrays):
    """`(item_size, num_blocks)` implied by a released weight file's arrays."""
    if "item_embeddings.weight" not in arrays:
        raise ReferenceWeightsError("the file has no item_embeddings.weight array")
    blocks = {int(m.group(1)) for name in arrays
              if (m := re.match(r"item_encoder\.layer\.(\d+)\.", name))}
    return arrays["item_embeddings.weight"].shape[0], len(blocks)


def reference_variable_map(encoder):
    """`{reference name: (keras variable, transpose?)}` for a `SequenceEncoder`."""
    mapping = {
        "item_embeddings.weight": (encoder.item_embeddings.embeddings, False),
        "position_embeddings.weight": (encoder.position_embeddings.embeddings, False),
        "LayerNorm.weight": (encoder.layer_norm.gamma, False),
        "LayerNorm.bias": (encoder.layer_norm.beta, False),
    }
    for i, block in enumerate(encoder.blocks):
        prefix = f"item_encoder.layer.{i}"
        attention, feed_forward = block.attention, block.feed_forward
        dense_layers = {
            "attention.query": attention.query, "attention.key": attention.key,
            "attention.value": attention.value, "attention.dense": attention.dense,
            "intermediate.dense_1": feed_forward.dense_1,
            "intermediate.dense_2": feed_forward.dense_2,
        }
        for name, layer in dense_layers.items():
            mapping[f"{prefix}.{name}.weight"] = (layer.kernel, True)
            mapping[f"{prefix}.{name}.bias"] = (layer.bias, False)
        for name, norm in (("attention", attention.layer_norm),
                           ("intermediate", feed_forward.layer_norm)):
            mapping[f"{prefix}.{name}.LayerNorm.weight"] = (norm.gamma, False)
            mapping[f"{prefix}.{name}.LayerNorm.bias"] = (norm.beta, False)
    return mapping


def load_reference_weights(encoder, path):
    """Assigns a released `.npz` to a built `SequenceEncoder`.

    Raises:
      ReferenceWeightsError: naming the file and the first missing, unexpected
        or mis-shaped array.
    """
    arrays = read_reference_weights(path)
    mapping = reference_variable_map(encoder)
    missing = sorted(set(mapping) - set(arrays))
    unexpected = sorted(set(arrays) - set(mapping))
    if missing or unexpected:
        problem = (f"lacks {missing[0]}" if missing else f"has an unexpected array {unexpected[0]}")
        raise ReferenceWeightsError(
            f"{path}: {problem} (the model has {len(encoder.blocks)} blocks; "
            f"the file has {reference_shape(arrays)[1]})")
    for name, (variable, transpose) in mapping.items():
        value = arrays[name].T if transpose else arrays[name]
        if tuple(value.shape) != tuple(variable.shape):
            raise ReferenceWeightsError(
                f"{path}: {name} has shape {tuple(arrays[name].shape)}, the model expects "
                f"{tuple(variable.shape)[::-1] if transpose else tuple(variable.shape)}")
        variable.assign(value.astype(np.float32))
