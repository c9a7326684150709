"""Streaming batch inference (`predict --out CSV`): throughput and peak RSS against folder size.

For each count N (default 1 000 and 10 000), a folder of N JPEG files (copies of a few real
slices, re-encoded once) is predicted by one model in a fresh child process through
`stream.stream_to_csv`, exactly what `predict --out` runs: files read, decoded and prepared by
a tf.data pipeline's threads one batch ahead of the compiled forward pass (batch 32), the rows
fsynced every 64. Per N: the child's own timing of
the streaming loop (images/s, start-up and model loading excluded) and its peak RSS (VmHWM).
`rss_growth` is the peak at the largest N over the peak at the smallest, minus 1.

Standalone: `python -m pipeline.bench --stream RUN_DIR OUT.json [N1,N2,...] [MODEL]` (slices
copied from the run's test split). The child is `python -m pipeline.bench --stream-child SPEC`.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import run_files
from pipeline.artifacts import write_json_atomic
from pipeline.bench.timing import proc_memory_mb, run_measured, tail

COUNTS = (1000, 10000)
JPEG_QUALITY = 90


def jpeg_folder(images: Sequence[np.ndarray], n: int, folder: Path) -> Path:
    """`n` JPEG files in `folder`, cycling through `images` (RGB uint8), each encoded once."""
    import cv2

    blobs = []
    for img in images:
        ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ValueError("JPEG encoding failed")
        blobs.append(buf.tobytes())
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"slice-{i:06d}.jpg").write_bytes(blobs[i % len(blobs)])
    return folder


def stream_benchmark(run_dir: Path, images: Sequence[np.ndarray], work: Path,
                     counts: Sequence[int] = COUNTS, model: str = "mobilenetv2"
                     ) -> dict[str, Any]:
    """Each count in its own child process; the report's `streaming` section."""
    from pipeline.bench.training import _child_env

    runs = []
    for n in counts:
        folder = jpeg_folder(images, n, work / f"stream-{n}")
        spec = {"run_dir": str(run_dir), "folder": str(folder), "model": model,
                "out": str(work / f"stream-{n}.csv"), "result": str(work / f"stream-{n}.json")}
        spec_path = work / f"stream-{n}-spec.json"
        write_json_atomic(spec_path, spec)
        proc = run_measured([sys.executable, "-m", "pipeline.bench", "--stream-child",
                             str(spec_path)], work / f"stream-{n}.log", timeout_s=3600,
                            env=_child_env())
        row: dict[str, Any] = {"n": n, "process_wall_s": proc["wall_s"]}
        if proc["returncode"] == 0 and Path(spec["result"]).is_file():
            row.update(json.loads(Path(spec["result"]).read_text()))
            peaks = [v for v in (row.get("self_peak_rss_mb"), proc["peak_rss_mb"]) if v]
            row["peak_rss_mb"] = max(peaks) if peaks else None
        else:
            row["error"] = f"exit code {proc['returncode']}: {tail(work / f'stream-{n}.log', 6)}"
        runs.append(row)
    peaks = [r.get("peak_rss_mb") for r in runs]
    growth = (round(peaks[-1] / peaks[0] - 1, 4)
              if len(runs) > 1 and all(peaks) else None)
    rate = runs[-1].get("images_per_s") if runs else None
    from pipeline.stream import BATCH, CHUNK

    return {"model": model, "batch_size": BATCH, "chunk": CHUNK, "format": "jpeg",
            "runs": runs, "rss_growth": growth, "images_per_s": rate,
            # the targets; checked here, not in GOALS (the report's headline four)
            "targets": {"images_per_s": ">= 40", "rss_growth": "<= 0.10"},
            "met": {"images_per_s": None if rate is None else rate >= 40,
                    "rss_growth": None if growth is None else growth <= 0.10}}


def child_main(argv: list[str]) -> int:
    """One streaming predict, timed from the first file (the run's models already loaded)."""
    from pipeline.artifacts import open_run
    from pipeline.predict import Predictor
    from pipeline.stream import expand_inputs, stream_to_csv

    if len(argv) != 1:
        sys.stderr.write("usage: python -m pipeline.bench --stream-child SPEC.json\n")
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    predictor = Predictor(open_run(spec["run_dir"]), models=[spec["model"]])
    paths = expand_inputs([spec["folder"]])
    t0 = time.perf_counter()
    res = stream_to_csv(predictor, paths, Path(spec["out"]))
    seconds = time.perf_counter() - t0
    write_json_atomic(Path(spec["result"]), {
        "written": res["written"], "failed": len(res["failed"]),
        "stream_s": round(seconds, 2), "images_per_s": round(len(paths) / seconds, 1),
        "self_peak_rss_mb": proc_memory_mb("self")})
    return 0


def standalone_main(argv: list[str]) -> int:
    """RUN_DIR OUT.json [N1,N2,...] [MODEL]: the benchmark alone, on slices of the run's data."""
    from pipeline.artifacts import open_run
    from pipeline.images import read_image

    if not 2 <= len(argv) <= 4:
        sys.stderr.write("usage: python -m pipeline.bench --stream RUN_DIR OUT.json "
                         "[N1,N2,...] [MODEL]\n")
        return 2
    run_dir, out, counts, model = (*argv, None, None)[:4]
    run = open_run(run_dir)
    root = run.data_dir
    test = json.loads((run.path / run_files.SPLITS).read_text())["test"] if root else []
    sources = [read_image(root / r["path"]) for r in test[:16]] if root else []
    if not sources:
        raise SystemExit("the run's dataset is not here: no slices to copy")
    with tempfile.TemporaryDirectory(prefix="brain-mri-stream-") as tmp:
        ns = [int(c) for c in counts.split(",")] if counts else list(COUNTS)
        result = stream_benchmark(run.path, sources, Path(tmp), ns, model or "mobilenetv2")
    write_json_atomic(Path(out), result)
    print(json.dumps(result, indent=1))
    return 0

