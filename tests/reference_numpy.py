"""An independent numpy forward pass of the reference encoder, on state-dict arrays.

Written from REFERENCE.md, sharing no code with the package: tests compare our
Keras encoder with it.
"""

import numpy as np
from scipy.special import erf


def random_state_dict(item_size, num_blocks, hidden=64, max_len=50, seed=0):
    """Reference-named arrays with dense weights [out, in], as the released .npz."""
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=0.1):
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    arrays = {
        "item_embeddings.weight": normal(item_size, hidden, scale=0.5),
        "position_embeddings.weight": normal(max_len, hidden, scale=0.5),
        "LayerNorm.weight": 1 + normal(hidden),
        "LayerNorm.bias": normal(hidden),
    }
    for i in range(num_blocks):
        prefix = f"item_encoder.layer.{i}"
        for name in ("query", "key", "value", "dense"):
            arrays[f"{prefix}.attention.{name}.weight"] = normal(hidden, hidden, scale=0.3)
            arrays[f"{prefix}.attention.{name}.bias"] = normal(hidden)
        arrays[f"{prefix}.intermediate.dense_1.weight"] = normal(4 * hidden, hidden, scale=0.3)
        arrays[f"{prefix}.intermediate.dense_1.bias"] = normal(4 * hidden)
        arrays[f"{prefix}.intermediate.dense_2.weight"] = normal(hidden, 4 * hidden, scale=0.3)
        arrays[f"{prefix}.intermediate.dense_2.bias"] = normal(hidden)
        for part in ("attention", "intermediate"):
            arrays[f"{prefix}.{part}.LayerNorm.weight"] = 1 + normal(hidden)
            arrays[f"{prefix}.{part}.LayerNorm.bias"] = normal(hidden)
    return arrays


def _layer_norm(x, weight, bias, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return weight * (x - mean) / np.sqrt(variance + eps) + bias


def _linear(x, arrays, name):
    return x @ arrays[f"{name}.weight"].T + arrays[f"{name}.bias"]


def _softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def encode(arrays, ids, num_heads=2):
    """[batch, len] ids -> [batch, len, hidden], inference mode, float64."""
    arrays = {k: v.astype(np.float64) for k, v in arrays.items()}
    batch, length = ids.shape
    hidden = arrays["item_embeddings.weight"].shape[1]
    head = hidden // num_heads
    x = arrays["item_embeddings.weight"][ids] + arrays["position_embeddings.weight"][:length]
    x = _layer_norm(x, arrays["LayerNorm.weight"], arrays["LayerNorm.bias"])
    allowed = (ids > 0)[:, None, None, :] & np.tril(np.ones((length, length), bool))[None, None]
    additive = (1.0 - allowed) * -10000.0
    blocks = len({k.split(".")[2] for k in arrays if k.startswith("item_encoder.")})
    for i in range(blocks):
        p = f"item_encoder.layer.{i}"

        def heads(t):
            return t.reshape(batch, length, num_heads, head).transpose(0, 2, 1, 3)

        q, k, v = (heads(_linear(x, arrays, f"{p}.attention.{name}"))
                   for name in ("query", "key", "value"))
        # The reference adds -10000 in float32, where it rounds scores to about
        # 1e-3: a padded query's weights depend on that rounding, so keep it.
        scores = (q @ k.transpose(0, 1, 3, 2) / np.sqrt(head)).astype(np.float32)
        probabilities = _softmax((scores + additive.astype(np.float32)).astype(np.float64))
        context = (probabilities @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        x = _layer_norm(_linear(context, arrays, f"{p}.attention.dense") + x,
                        arrays[f"{p}.attention.LayerNorm.weight"],
                        arrays[f"{p}.attention.LayerNorm.bias"])
        inner = _linear(x, arrays, f"{p}.intermediate.dense_1")
        inner = 0.5 * inner * (1.0 + erf(inner / np.sqrt(2.0)))
        x = _layer_norm(_linear(inner, arrays, f"{p}.intermediate.dense_2") + x,
                        arrays[f"{p}.intermediate.LayerNorm.weight"],
                        arrays[f"{p}.intermediate.LayerNorm.bias"])
    return x
