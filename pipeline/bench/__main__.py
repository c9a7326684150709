"""`python -m pipeline.bench SPEC.json RESULT.json`: one training recipe in a child process.

The benchmark's parent process starts this command once per (model, recipe); see
`training.run_recipe`. `--stream-child SPEC.json` is the streaming benchmark's child, and
`--stream RUN_DIR OUT.json [N1,N2] [MODEL]` runs that benchmark alone (`streaming`).
"""

import sys

if sys.argv[1:2] == ["--stream-child"]:
    from pipeline.bench.streaming import child_main

    sys.exit(child_main(sys.argv[2:]))
if sys.argv[1:2] == ["--stream"]:
    from pipeline.bench.streaming import standalone_main

    sys.exit(standalone_main(sys.argv[2:]))

from pipeline.bench.recipes import worker_main  # noqa: E402  (after the dispatch above)

sys.exit(worker_main(sys.argv[1:]))
