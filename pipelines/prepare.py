"""`python pipelines/prepare.py --input EVENTS --output DIR`: see `iclrec_tf.prepare.run`."""

import sys

from iclrec_tf import cli
from iclrec_tf.prepare.cli import PROG, main

if __name__ == "__main__":
    sys.exit(cli.run(main, PROG))
