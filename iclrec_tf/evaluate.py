"""`python -m iclrec_tf.evaluate`: full-ranking test metrics of a run or of the
reference's released weights, as one JSON object on the last stdout line."""

import json
import sys
import time

from iclrec_tf import cli
from iclrec_tf.config import PROTOCOLS, TrainConfig
from iclrec_tf.data.datasets import load_sequences, resolve_dataset
from iclrec_tf.errors import ConfigError, ReferenceWeightsError
from iclrec_tf.model.reference import read_reference_weights, reference_shape
from iclrec_tf.train.rundir import RunDirectory

PROG = "python -m iclrec_tf.evaluate"


def build_parser():
    parser = cli.ArgumentParser(
        prog=PROG,
        description="Evaluate trained weights with full ranking.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a run directory written by iclrec_tf.fit")
    source.add_argument("--reference-weights",
                        help="a released .npz of the reference implementation")
    parser.add_argument("--dataset", help="dataset name or file (default: the run's dataset; "
                        "required with --reference-weights)")
    parser.add_argument("--data-dir", help="folder holding the dataset files")
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="reference")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--length-buckets", action="store_true",
                        help="users in length order, each batch cut to its longest input: "
                        "the same metrics, faster")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    # Every check of the user's input comes before TensorFlow loads.
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {args.batch_size}")
    start = time.perf_counter()
    if args.run:
        run_dir = RunDirectory(args.run)
        config = run_dir.config()
        weights = run_dir.weights_prefix()
        dataset = args.dataset or config.dataset
    else:
        if not args.dataset:
            raise ConfigError("--dataset is required with --reference-weights")
        dataset = args.dataset
        item_size, num_blocks = reference_shape(read_reference_weights(args.reference_weights))
        config = TrainConfig.for_dataset(dataset, num_blocks=num_blocks)
    data = load_sequences(resolve_dataset(dataset, args.data_dir)).subset(config.max_users)
    if not args.run and item_size != data.item_size:
        raise ReferenceWeightsError(
            f"{args.reference_weights}: {item_size} item embeddings, but {dataset} "
            f"needs {data.item_size} (max item id + 2)")

    # TensorFlow loads only now: every mistake in the input above is one line.
    from iclrec_tf.data.pipeline import SequencePipelines
    from iclrec_tf.model.iclrec import build_model
    from iclrec_tf.model.reference import load_reference_weights
    from iclrec_tf.train.metrics import RankingEvaluator

    model = build_model(config, data.item_size)
    if args.run:
        model.load_weights(weights).expect_partial()
    else:
        load_reference_weights(model.encoder, args.reference_weights)
    print(f"Loaded {data.num_users} users and the weights: "
          f"{time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)

    start = time.perf_counter()
    pipelines = SequencePipelines(data, config.max_seq_length)
    metrics = RankingEvaluator(
        model, pipelines.evaluation(args.split, args.batch_size, args.length_buckets),
        args.protocol, data.mask_id)()
    print(f"Evaluated {args.split} ({args.protocol} protocol): "
          f"{time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, PROG))
