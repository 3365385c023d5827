"""`python -m iclrec_tf.export`: a trained run as a SavedModel version for TF Serving.

The signatures are described in `iclrec_tf.serve.module`, the versioned layout
in `iclrec_tf.serve.saved_model`.
"""

import sys

from iclrec_tf import cli
from iclrec_tf.model.iclrec import build_model
from iclrec_tf.serve.saved_model import checkpoint_item_size, export_saved_model
from iclrec_tf.train.rundir import RunDirectory


def build_parser():
    parser = cli.ArgumentParser(
        prog="python -m iclrec_tf.export",
        description="Export a trained run as a SavedModel version for TF Serving.")
    parser.add_argument("--run", required=True, help="a run directory written by iclrec_tf.fit")
    parser.add_argument("--model-dir", required=True,
                        help="the TF Serving model base path, e.g. saved_models/toys; the "
                        "export goes to its next free version number")
    parser.add_argument("--top-k", type=int, default=100,
                        help="recommendations per user in serving_default (default 100)")
    parser.add_argument("--keep-history", action="store_true",
                        help="allow recommending the request's own items (repeat consumption)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    run_dir = RunDirectory(args.run)
    config = run_dir.config()
    weights = run_dir.weights_prefix()
    model = build_model(config, checkpoint_item_size(weights))
    model.load_weights(weights).expect_partial()
    version_dir = export_saved_model(model, args.model_dir, args.top_k, args.keep_history,
                                     vocabulary=run_dir.vocabulary(), config=config)
    if not model.intents_ready.numpy():
        print(f"{args.run} fitted no intents (contrast type {config.contrast_type!r}): "
              "the export has no intent signature", file=sys.stderr)
    print(version_dir, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "python -m iclrec_tf.export"))
