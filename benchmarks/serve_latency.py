"""Latency and throughput of an exported SavedModel's `serving_default` signature.

(Of `serving_item_ids`, the same on integer ids, when the export has a vocabulary.)

    python benchmarks/serve_latency.py --model-dir saved_models/toys/1

The SavedModel is loaded with `tf.saved_model.load` and its signature called
in-process: model time, without TF Serving's request parsing and RPC. Requests
are real users' test histories (the whole history, as a client sends it),
left-padded to the longest of their batch; tensors are built before the clock
starts, outputs are fetched as numpy inside it. Prints one JSON object on its last line:

- `p50_ms_b1`, `p99_ms_b1`: latency of one-user requests.
- `users_per_s_b256`: throughput with 256 users per request.
- `users_per_s_b256_full_window`: the same when every history fills the
  model's window (the worst case; the median Toys history has 5 items).
- `users_per_cpu_s_b256`: users of the 256-user requests per CPU-second this
  process used; less sensitive than wall-clock time to other processes.
- `k`, `users`, `threads`, `load_average`: what was measured (`threads` null:
  TensorFlow's default), and how busy the machine was (another process on the
  cores slows every figure).
"""

import json
import os
import pathlib
import sys
import time

import numpy as np

from iclrec_tf import cli
from iclrec_tf.config import TrainConfig
from iclrec_tf.data.datasets import load_sequences, resolve_dataset
from iclrec_tf.errors import ConfigError

BATCH = 256
WARM_UP_CALLS = 20


def build_parser():
    parser = cli.ArgumentParser(
        prog="python benchmarks/serve_latency.py",
        description="Time an exported SavedModel's serving_default on real histories.")
    parser.add_argument("--model-dir", required=True,
                        help="a version directory written by iclrec_tf.export, e.g. "
                        "saved_models/toys/1")
    parser.add_argument("--dataset", default="toys", help="where the histories come from")
    parser.add_argument("--data-dir", help="folder holding the dataset files")
    parser.add_argument("--requests", type=int, default=1000,
                        help="one-user requests timed (default 1000)")
    parser.add_argument("--batches", type=int, default=40,
                        help="256-user requests timed, per kind (default 40)")
    parser.add_argument("--max-len", type=int, default=TrainConfig.max_seq_length,
                        help="the model's window, to pick full-window users (default %(default)s)")
    parser.add_argument("--threads", type=int,
                        help="TensorFlow intra- and inter-op threads (default: TensorFlow's "
                        "choice, one per core); 1 gives per-core figures")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def left_padded(rows):
    width = max(len(row) for row in rows)
    return np.stack([np.pad(row, (width - len(row), 0)) for row in rows]).astype(np.int64)


def seconds_per_call(signature, requests):
    """Wall-clock seconds of each call, after `WARM_UP_CALLS` untimed ones.

    Returns:
      [len(requests)] wall seconds, and the CPU seconds this process used for all.
    """
    for item_ids in requests[:WARM_UP_CALLS]:
        signature(item_ids=item_ids)
    seconds = []
    cpu_start = time.process_time()
    for item_ids in requests:
        start = time.perf_counter()
        {name: value.numpy() for name, value in signature(item_ids=item_ids).items()}
        seconds.append(time.perf_counter() - start)
    return np.array(seconds), time.process_time() - cpu_start


def main(argv=None):
    args = build_parser().parse_args(argv)
    for flag in ("requests", "batches", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag} must be a positive integer, got {value}")
    model_dir = pathlib.Path(args.model_dir)
    if not (model_dir / "saved_model.pb").is_file():
        raise ConfigError(f"--model-dir {model_dir}: no saved_model.pb; pass a version "
                          "directory such as saved_models/toys/1")
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    data = load_sequences(resolve_dataset(args.dataset, args.data_dir))
    signatures = tf.saved_model.load(str(model_dir)).signatures
    # With a vocabulary (items.txt) serving_default takes string ids; the integer one is this.
    signature = signatures.get("serving_item_ids") or signatures["serving_default"]
    rng = np.random.default_rng(args.seed)

    def requests(users, count, size):
        return [tf.constant(left_padded([data.sequence(u)[:-1] for u in rng.choice(users, size)]))
                for _ in range(count)]

    everyone = np.arange(data.num_users)
    long_histories = everyone[data.lengths > args.max_len]
    load_before = os.getloadavg()[0]
    one_user, _ = seconds_per_call(signature, requests(everyone, args.requests, 1))
    print(f"batch 1: p50 {np.median(one_user) * 1e3:.2f} ms", file=sys.stderr, flush=True)
    batched, batched_cpu = seconds_per_call(signature, requests(everyone, args.batches, BATCH))
    full, _ = seconds_per_call(signature, requests(long_histories, args.batches, BATCH))
    print(json.dumps({
        "p50_ms_b1": round(float(np.percentile(one_user, 50)) * 1e3, 3),
        "p99_ms_b1": round(float(np.percentile(one_user, 99)) * 1e3, 3),
        "users_per_s_b256": round(BATCH * len(batched) / float(batched.sum())),
        "users_per_s_b256_full_window": round(BATCH * len(full) / float(full.sum())),
        "users_per_cpu_s_b256": round(BATCH * len(batched) / batched_cpu),
        "k": int(signature.structured_outputs["item_ids"].shape[1]),
        "users": data.num_users,
        "threads": args.threads,
        "load_average": round(max(load_before, os.getloadavg()[0]), 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "python benchmarks/serve_latency.py"))
