"""What the paper's analyses cost against one plain evaluation, on trained weights.

    python benchmarks/analysis_cost.py --reference-weights W.npz --dataset toys [--threads N]
    python benchmarks/analysis_cost.py --run runs/toys [--threads N]

Loads the weights once (as `evaluate` and `record` do), then times, each the
median of `--repeats` after one untimed warm-up:

- `evaluate_s`: one clean test evaluation, length-bucketed (`evaluate --length-buckets`);
- `by_length_s`: `--by-length`: that evaluation, then the groups' metrics;
- `noise_inputs_s`: drawing the noisy inputs of every user at `--noise-ratio`;
- `noise_s`: `--noise-ratio`: drawing them, then evaluating on them;

and prints one JSON object on its last line with those, `users`, `noise_ratio`,
and `noise_per_evaluate` and `by_length_per_evaluate`, their ratios to a plain
evaluation.
"""

import json
import statistics
import sys
import time

from iclrec_tf import cli
from iclrec_tf.evaluate import add_weights_flags, load_evaluation

BATCH_SIZE = 1024


def _median_seconds(work, repeats):
    work()  # warm-up: traces the step for the batches' widths
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - start)
    return round(statistics.median(seconds), 3)


def main():
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    add_weights_flags(parser)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--noise-ratio", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be a positive integer, got {args.repeats}")
    config, data, model = load_evaluation(args.run, args.reference_weights, args.dataset,
                                          args.data_dir, args.threads)

    from iclrec_tf.data.noise import noisy_inputs
    from iclrec_tf.train.analyses import ModelAnalyses

    def analyses():  # a fresh one each time: no cached clean ranks
        return ModelAnalyses(model, data, config.max_seq_length, "test", "reference",
                             BATCH_SIZE, length_buckets=True)

    figures = {
        "users": data.num_users,
        "noise_ratio": args.noise_ratio,
        "evaluate_s": _median_seconds(lambda: analyses().metrics(), args.repeats),
        "by_length_s": _median_seconds(lambda: analyses().by_length(), args.repeats),
        "noise_inputs_s": _median_seconds(
            lambda: noisy_inputs(data, "test", args.noise_ratio, seed=1), args.repeats),
        "noise_s": _median_seconds(lambda: analyses().metrics(args.noise_ratio, seed=1),
                                   args.repeats),
    }
    for name in ("noise", "by_length"):
        figures[f"{name}_per_evaluate"] = round(figures[f"{name}_s"] / figures["evaluate_s"], 2)
    print(f"# {config.dataset}, {config.num_blocks} blocks, threads {args.threads or 'all'}",
          file=sys.stderr)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "benchmarks/analysis_cost.py"))
