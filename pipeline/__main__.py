"""`python -m pipeline`: the command line (`pipeline.cli.main`)."""

import sys

try:  # Ctrl-C while TensorFlow is still being imported printed a 58-line traceback
    from pipeline.cli import main
except KeyboardInterrupt:
    sys.stderr.write("interrupted\n")
    sys.exit(130)

main()
