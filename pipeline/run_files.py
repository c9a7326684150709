"""The names of a run folder's files, in one place: the stage that writes a file and every
reader (other stages, the CLI, the dashboard) take its name from here, so a rename cannot miss
one. docs/architecture.md describes each file's contents."""

# in the run folder
MANIFEST = "manifest.json"  # what is needed to reload and explain the models (artifacts)
SPLITS = "splits.json"  # the train / val / test paths (train)
SPLIT_HASHES = "split_hashes.json"  # pixel digests and pHashes of the splits (membership)
COMPARISON = "comparison.json"  # the paired comparison of the models (evaluate)
ROBUSTNESS = "robustness.json"  # accuracy on shifted test copies (evaluate --robustness)
CALIBRATION = "calibration.json"  # the temperatures (calibrate)
FLAGS = "flags.json"  # how often flagged answers were right (ood, train --evaluate)
OOD_REPORT = "ood.json"  # what the OOD scores were fitted and measured on (ood)
EXPLAIN_CHOICE = "explain_choice.json"  # each model's default explanation (explain-choose)

# in each model's folder of a run
MODEL = "model.keras"  # the trained model, preprocessing inside (train)
HISTORY = "history.json"  # per-epoch losses and metrics (train)
METRICS = "metrics.json"  # test metrics (evaluate)
PREDICTIONS = "predictions.csv"  # test answers per image (evaluate)
CONFUSION = "confusion_matrix.json"  # (evaluate)
CURVES = "curves.json"  # ROC and PR curves (evaluate)
EXPLANATIONS = "explanations.json"  # explanation quality on the test split (explain-eval)
# explain-eval --data DIR: one <folder>-<method>.json per folder and method (explain.external)
EXPLANATIONS_EXTERNAL = "explanations-external"
OOD_SCORE = "ood.npz"  # the fitted "unlike the training data" score (ood)

# while a command writes into a run folder (`locks.run_writer`); removed when it is done
WRITER_LOCK = ".writer.lock"
