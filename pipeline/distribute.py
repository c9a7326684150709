"""Training on `tf.distribute`: which strategy, which worker writes, and the batch-size rule.

`train --strategy` picks one of:
- `default`: one process, TensorFlow's default strategy (what training always did);
- `mirrored`: `MirroredStrategy`, one replica per local GPU (the CPU when there is none);
- `multiworker`: `MultiWorkerMirroredStrategy` over the machines named in `TF_CONFIG`.

Batch rule: the config's `batch_size` is the **global** batch (split evenly over the replicas),
and the learning rate is not scaled. Each step then averages the gradient over the same images
as a single process would, so a run's recipe, and what it learns, does not depend on how many
replicas trained it (only summation order and per-replica random augmentation differ).

Only the chief writes the run folder. Other workers write their checkpoints into a temporary
folder of their own that is removed when they finish (as the TensorFlow multi-worker guide
recommends: every worker must save, because saving may involve collective operations).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STRATEGIES = ("default", "mirrored", "multiworker")
LR_SCALING = ("none: batch_size is the global batch, split over the replicas, so every step "
              "sees as many images as in one process and the learning rate is kept")


class StrategyError(ValueError):
    """A strategy name or `TF_CONFIG` that cannot work (reported in one line)."""


@dataclass
class Cluster:
    """The strategy in use and this process's place in it."""

    name: str  # one of STRATEGIES
    strategy: Any  # tf.distribute.Strategy
    is_chief: bool  # writes the run folder
    task: str  # "chief 0", "worker 1", or "local"
    workers: int

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    def manifest(self, global_batch: int) -> dict[str, Any]:
        """What the run's manifest states about distribution (`distribution` key)."""
        return {"strategy": self.name, "workers": self.workers, "replicas": self.replicas,
                "global_batch_size": global_batch,
                "per_replica_batch_size": global_batch / self.replicas,
                "learning_rate_scaling": LR_SCALING}


def read_tf_config(env: dict[str, str] | None = None) -> dict[str, Any]:
    """`TF_CONFIG` parsed and checked: {"cluster": {...}, "task": {"type", "index"}}."""
    raw = (os.environ if env is None else env).get("TF_CONFIG", "")
    if not raw.strip():
        raise StrategyError("--strategy multiworker needs TF_CONFIG (see docs/scale-out.md)")
    try:
        conf = json.loads(raw)
        cluster, task = conf["cluster"], conf["task"]
        kind, index = str(task["type"]), int(task["index"])
        hosts = cluster[kind]
    except (ValueError, KeyError, TypeError) as exc:
        raise StrategyError(f"TF_CONFIG is not valid ({type(exc).__name__}: {exc}); it needs "
                            '{"cluster": {"worker": [...]}, "task": {"type", "index"}}') from None
    if not isinstance(hosts, list) or not 0 <= index < len(hosts):
        raise StrategyError(f"TF_CONFIG task {kind} {index} is not in its cluster")
    return conf


def is_chief_task(conf: dict[str, Any]) -> bool:
    """The chief is the `chief` task, or worker 0 when the cluster names no chief."""
    kind, index = conf["task"]["type"], int(conf["task"]["index"])
    if "chief" in conf["cluster"]:
        return kind == "chief"
    return kind == "worker" and index == 0


def _multi_worker_strategy(tf: Any) -> Any:
    """MultiWorkerMirroredStrategy that reduces nested values one tensor at a time.

    Two Keras 3 calls this strategy's `reduce` does not take (keras-team/keras#20585): `fit`
    reduces a whole (x, y) batch at once before building the model (it takes one tensor), and
    every step reduces the scalar losses and metrics along axis 0 (scalars have no axis 0).
    Reducing each element, and scalars across replicas only, is what those calls mean.
    """
    class NestReducing(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op: Any, value: Any, axis: Any = None) -> Any:
            parent = super()

            def one(v: Any) -> Any:
                local = self.experimental_local_results(v)[0]
                scalar = axis is not None and getattr(local, "shape", None) is not None \
                    and local.shape.rank == 0
                return parent.reduce(reduce_op, v, None if scalar else axis)

            return tf.nest.map_structure(one, value)

    return NestReducing()


def check_strategy(name: str) -> dict[str, Any] | None:
    """StrategyError unless `name` is a strategy this machine can start (multiworker: a valid
    TF_CONFIG, returned); no TensorFlow, so `train` refuses before it says or reads anything."""
    if name not in STRATEGIES:
        raise StrategyError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return read_tf_config() if name == "multiworker" else None


def make_cluster(name: str) -> Cluster:
    """Create the strategy `name`. Call it before any other TensorFlow work in the process:
    MultiWorkerMirroredStrategy must configure collective ops at start-up."""
    conf = check_strategy(name)
    import tensorflow as tf

    if name == "default":
        return Cluster(name, tf.distribute.get_strategy(), True, "local", 1)
    if name == "mirrored":
        return Cluster(name, tf.distribute.MirroredStrategy(), True, "local", 1)
    assert conf is not None
    strategy = _multi_worker_strategy(tf)
    workers = sum(len(v) for k, v in conf["cluster"].items() if k in ("chief", "worker"))
    task = f"{conf['task']['type']} {conf['task']['index']}"
    return Cluster(name, strategy, is_chief_task(conf), task, workers)


@contextlib.contextmanager
def worker_folder(cluster: Cluster, artifacts_dir: Path, resume: str | None) -> Iterator[Path]:
    """The artifacts folder this process writes to: the real one on the chief; on any other
    worker a temporary folder, removed afterwards. To resume, a worker starts from a copy of
    the chief's interrupted run (the artifacts folder must be shared, like the data)."""
    if cluster.is_chief:
        yield artifacts_dir
        return
    scratch = Path(tempfile.mkdtemp(prefix=f"brain-mri-{cluster.task.replace(' ', '')}-"))
    try:
        if resume:
            src = artifacts_dir / "runs" / f".tmp-{resume}"
            if src.is_dir():  # else RunWriter reports the missing run in one line
                shutil.copytree(src, scratch / "runs" / src.name)
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
