"""Run folders: the self-describing manifest, safe loading, and finding a run by id or "latest"
(atomic writing: `pipeline.atomic`).

A run is built in `runs/.tmp-<run_id>/` and renamed to `runs/<run_id>/` only when complete, then
`latest` is replaced atomically, so a crash never leaves a half-written run that looks complete.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

from pipeline import run_files
from pipeline.atomic import write_json_atomic, write_text_atomic  # noqa: F401  (their old home)

SCHEMA_VERSION = 1
TMP_PREFIX = ".tmp-"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The environment variable naming the artifacts folder: the dashboard reads runs from it, and
# every command's --artifacts (train's --out) defaults to it (`cli.common.artifacts_option`);
# the CLI ignored it, so `predict --run latest` answered with another folder's latest run.
ARTIFACTS_ENV = "BRAIN_MRI_ARTIFACTS"
DEFAULT_ARTIFACTS = Path("artifacts")  # without it: relative to the working folder
BENCH_DIR = "bench"  # `bench`'s reports, in the artifacts folder (its --out default)


def default_artifacts() -> Path:
    """The artifacts folder a command uses without --artifacts: `$BRAIN_MRI_ARTIFACTS` when set
    and not empty (as click reads an option's variable), else `artifacts`."""
    raw = os.environ.get(ARTIFACTS_ENV)
    return Path(raw).expanduser() if raw else DEFAULT_ARTIFACTS


def crop_head(info: Mapping[str, Any]) -> bool:
    """Whether a model's images are cropped to the head before resizing, from its manifest
    entry `info`: the one reading of `crop_head` (predict, evaluate, explain, bench; the
    fallback was True in evaluate and the dashboard, False in predict, explain and bench).
    Every run records it (train has since its first version); a manifest without it, written
    by hand or another tool, gets training's default, `config.ModelConfig.crop_head`."""
    from pipeline.config import ModelConfig

    value = info.get("crop_head")
    return ModelConfig.crop_head if value is None else bool(value)


def relative_to_project(path: str | Path) -> str | None:
    """`path` relative to the project root (e.g. ../shared/data/x), or None on another drive."""
    try:
        return os.path.relpath(Path(path).resolve(), PROJECT_ROOT)
    except ValueError:
        return None


def recorded_path(path: str | Path) -> str:
    """`path` as run files record it: relative to the project root (../shared/data/x), never
    this machine's absolute path; as given when it is on another drive. What explanations.json
    and explain_choice.json record as data_dir and masks_dir, and evaluate as its source."""
    rel = relative_to_project(path)
    return rel if rel is not None else str(path)


def shown_path(path: str | Path) -> str:
    """`path` as messages show it, never as this machine's absolute path (issue 18).

    Relative to the project when the two share a folder below the file-system root
    (artifacts/runs/<id>/manifest.json, ../shared/data/x); else from its `runs` folder on, i.e.
    relative to its artifacts folder (runs/<id>/manifest.json); else only its name. A path
    like ../../tmp/x is the absolute one in disguise, so it counts as sharing nothing.
    """
    # abspath, not resolve(): a symlinked ../shared must read as the path the user gave
    # (resolved, it named the link's target: ../../shared/data on a CI checkout)
    p = Path(os.path.abspath(path))
    try:
        common = Path(os.path.commonpath([p, PROJECT_ROOT]))
    except ValueError:  # another drive
        common = Path(p.anchor)
    if common != Path(common.anchor):
        return Path(os.path.relpath(p, PROJECT_ROOT)).as_posix()
    parts = p.parts
    if "runs" in parts[:-1]:
        k = len(parts) - 1 - parts[::-1].index("runs")
        return Path(*parts[k:]).as_posix()
    return p.name or p.as_posix()


# Bookkeeping that lets an interrupted run resume; removed once the run is in place.
SCRATCH_FILES = ("state.json", "run.json")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class ArtifactError(ValueError):
    """A run folder or one of its files is missing, damaged or of an unknown kind."""


def ensure_writable(folder: str | Path, what: str = "folder") -> Path:
    """Create `folder` if needed and prove a file can be written there, before expensive work.

    Permissions alone do not tell (root ignores them; read-only mounts and full disks do not
    show in the mode bits), so a temporary file is created and removed. ArtifactError (one line)
    otherwise: an evaluation must not predict for minutes and then fail on its first write.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():  # was "cannot write to ...: File exists"
        raise ArtifactError(f"the {what} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ArtifactError(f"cannot write to the {what} {folder}: "
                            f"{exc.strerror or exc}") from None
    return folder


def new_run_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_json(path: Path) -> Any:
    """Read a JSON file, turning absence and damage into ArtifactError with a clear message."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ArtifactError(f"missing file {shown_path(path)}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"damaged file {shown_path(path)}: not valid JSON ({exc})") from exc
    except OSError as exc:  # a folder in its place, permissions, I/O errors
        raise ArtifactError(f"cannot read {shown_path(path)}: {exc.strerror or exc}") from exc


class RunWriter:
    """Builds a run in a temporary folder; `finalize` makes it a complete run atomically."""

    def __init__(self, artifacts_dir: str | Path, run_id: str | None = None,
                 resume: bool = False) -> None:
        self.artifacts_dir = Path(artifacts_dir)
        self.runs_dir = self.artifacts_dir / "runs"
        self.run_id = new_run_id() if run_id is None else run_id
        if not _RUN_ID.fullmatch(self.run_id) or ".." in self.run_id:
            # A run id becomes a folder name: never let it climb out of runs/.
            raise ArtifactError(f"invalid run id {self.run_id!r}: use letters, digits, '_', "
                                "'-' and '.' only (like 20261122-221500-1a2b3c)")
        self.tmp = self.runs_dir / f"{TMP_PREFIX}{self.run_id}"
        if resume:
            if not self.tmp.is_dir():
                done = self.runs_dir / self.run_id
                hint = " (that run is already complete)" if done.is_dir() else ""
                raise ArtifactError(f"no interrupted run {self.run_id!r} in {self.runs_dir}{hint}")
        else:
            self.tmp.mkdir(parents=True, exist_ok=False)

    @property
    def final(self) -> Path:
        return self.runs_dir / self.run_id

    def model_dir(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_json(self, rel: str, obj: Any) -> Path:
        path = self.tmp / rel
        write_json_atomic(path, obj)
        return path

    def finalize(self, manifest: dict[str, Any], set_latest: bool = True,
                 before_rename: Callable[[Path], None] | None = None) -> Path:
        """Write the manifest, rename the folder into place, then point `latest` at it.

        `before_rename(tmp_folder)` runs once the manifest is written but before the rename, so
        what it writes (the evaluation) is part of the atomic run: a kill during it leaves a
        temporary run that `train --resume` finishes, never a final run without it.
        """
        manifest = {**manifest, "schema_version": SCHEMA_VERSION, "complete": True,
                    "run_id": self.run_id}
        for name in manifest.get("models", {}):
            if not (self.tmp / name / run_files.MODEL).is_file():
                raise ArtifactError(
                    f"cannot finalize run {self.run_id}: {name}/model.keras missing")
        for leftover in self.tmp.glob("*/checkpoint*"):
            leftover.unlink()
        write_json_atomic(self.tmp / run_files.MANIFEST, manifest)
        if before_rename is not None:
            before_rename(self.tmp)
        os.replace(self.tmp, self.final)
        # Only now: until the rename, a crash must leave a run that can be resumed.
        for name in SCRATCH_FILES:
            (self.final / name).unlink(missing_ok=True)
        # train's writer lock moved with the folder; its holder would look for it in .tmp-<id>
        (self.final / run_files.WRITER_LOCK).unlink(missing_ok=True)
        if set_latest:
            set_latest_run(self.artifacts_dir, self.run_id)
        return self.final


def set_latest_run(artifacts_dir: str | Path, run_id: str) -> None:
    write_text_atomic(Path(artifacts_dir) / "latest", run_id + "\n")


@dataclass
class RunInfo:
    run_id: str
    path: Path
    created: str
    models: list[str]
    data_dir: str
    title: str | None = None  # readable name (manifest "title"); older runs have none


def list_runs(artifacts_dir: str | Path) -> list[RunInfo]:
    """Complete runs under `artifacts_dir/runs`, newest first. Damaged ones are skipped."""
    runs_dir = Path(artifacts_dir) / "runs"
    out: list[RunInfo] = []
    if not runs_dir.is_dir():
        return out
    for path in runs_dir.iterdir():
        if path.name.startswith(".") or not path.is_dir():
            continue
        try:
            m = read_json(path / run_files.MANIFEST)
        except ArtifactError:
            continue
        if not isinstance(m, dict) or not m.get("complete"):
            continue
        title = m.get("title")
        out.append(RunInfo(path.name, path, str(m.get("created", "")),
                           list(m.get("models", {})), str(m.get("data", {}).get("dir", "")),
                           title if isinstance(title, str) else None))
    out.sort(key=lambda r: (r.created, r.run_id), reverse=True)
    return out


def _refuse_interrupted(folder: Path) -> None:
    """ArtifactError when `folder` is a run's temporary folder (`runs/.tmp-<id>`: no run for
    --run, even with a manifest, which a kill during the evaluation leaves; the training's own
    evaluation opens it with `open_run`), naming the commands that continue or remove it."""
    if folder.name.startswith(TMP_PREFIX) and folder.is_dir():
        from pipeline.interrupted import refusal  # it imports this module

        artifacts_dir = folder.absolute().parent.parent  # "." for a bare ".tmp-<id>" in runs/
        raise ArtifactError(refusal(artifacts_dir, folder.name[len(TMP_PREFIX):]))


def resolve_run(artifacts_dir: str | Path, run: str | None = None) -> Path:
    """Find a run folder from None/"latest", a run id, or a path to a run folder."""
    artifacts_dir = Path(artifacts_dir)
    said = ""  # where the id came from, when not from the caller
    if run == "":  # `--run ""` silently meant the latest run
        raise ArtifactError("the run's name is empty: give a run folder, a run id or "
                            "'latest'")
    if run in (None, "latest"):
        latest = artifacts_dir / "latest"
        if not latest.is_file():
            raise ArtifactError(f"no runs yet: {latest} does not exist. Train one with "
                                "`python -m pipeline run` (or `make demo`).")
        try:
            run = latest.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{latest} is damaged ({exc}); it should hold a run id") from exc
        if not run:
            raise ArtifactError(f"{latest} is empty")
        said = f" (named by {shown_path(latest)})"  # a deleted run's id read as one typed
    candidate = Path(run)
    if candidate.name == run_files.MANIFEST and candidate.is_file():  # a run's manifest given
        candidate = candidate.parent
    _refuse_interrupted(candidate)
    if candidate.is_dir() and (candidate / run_files.MANIFEST).exists():
        return candidate
    by_id = artifacts_dir / "runs" / str(run)
    if by_id.is_dir() and not candidate.is_absolute():  # "/tmp" joined as itself
        _refuse_interrupted(by_id)  # --run .tmp-<id>
        return by_id
    _refuse_interrupted(artifacts_dir / "runs" / f"{TMP_PREFIX}{run}")  # said "not found"
    if candidate.is_dir():  # was "missing file manifest.json", naming no folder (a review)
        raise ArtifactError(f"{run} is not a run folder (it has no {run_files.MANIFEST}): give "
                            "a run folder, a run id or 'latest'")
    known = ", ".join(r.run_id for r in list_runs(artifacts_dir)[:5]) or "none"
    raise ArtifactError(f"run {run!r}{said} not found in {artifacts_dir / 'runs'} (recent runs: "
                        f"{known})")


class Run:
    """A complete run folder: manifest, class names and models (loaded with safe_mode)."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest

    def __repr__(self) -> str:  # a notebook's cell output: which run, its models and classes
        return (f"<Run {self.run_id}: models {', '.join(self.model_names)}; classes "
                f"{', '.join(self.class_names)}>")

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id", self.path.name))

    @property
    def report_name(self) -> str:
        """"<title> (<run id>)": how reports and pictures that travel without the page name the
        run (the dashboard's PDF, CSV and overlay downloads, explain's captioned overlays)."""
        return f"{self.manifest.get('title') or 'Run'} ({self.run_id})"

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest["class_names"])

    @property
    def model_names(self) -> list[str]:
        return list(self.manifest["models"])

    def model_info(self, name: str) -> dict[str, Any]:
        try:
            return dict(self.manifest["models"][name])
        except KeyError as exc:
            raise ArtifactError(f"run {self.run_id} has no model {name!r}; it has "
                                f"{', '.join(self.model_names)}") from exc

    @cached_property
    def data_dir(self) -> Path | None:
        """The run's dataset folder, if reachable here (it may have moved with the project).

        Tried in order: the recorded absolute path, the recorded path relative to the project
        root (shipped runs), and `$BRAIN_MRI_DATA` when its folder name matches.
        """
        data = self.manifest.get("data", {})
        candidates = []
        if data.get("dir"):
            candidates.append(Path(data["dir"]))
        if data.get("dir_relative"):
            candidates.append(PROJECT_ROOT / data["dir_relative"])
        env = os.environ.get("BRAIN_MRI_DATA")
        if env and data.get("dir") and Path(env).name == Path(data["dir"]).name:
            candidates.append(Path(env))
        for c in candidates:
            if c.is_dir():
                return c.resolve()
        return None

    def dataset_root(self, data_root: str | Path | None = None) -> Path:
        """Where the run's dataset is now: `data_root` when given (it moved), else `data_dir`.
        ArtifactError naming `--run-data` when that folder is not there (one home: four stages
        said it, each quoting this machine's absolute path)."""
        root = Path(data_root) if data_root is not None else self.data_dir
        if root is None or not root.is_dir():
            recorded = (self.manifest.get("data") or {}).get("dir")
            where = shown_path(root if root is not None else recorded or "?")
            raise ArtifactError(f"the run's dataset folder {where} is not there; pass the folder "
                                "it moved to (CLI: --run-data DIR)")
        return root

    def read_json(self, rel: str) -> Any:
        return read_json(self.path / rel)

    def load_model(self, name: str):  # -> keras.Model
        """Load `<name>/model.keras` with safe_mode=True (no lambdas, no pickled code)."""
        import keras

        import pipeline.layers  # noqa: F401  (registers our layers for deserialisation)

        info = self.model_info(name)
        file = str(info.get("file", f"{name}/model.keras"))
        path = self.path / file
        shown = shown_path(path)
        if "/" not in shown:  # a run outside the project and any runs/ folder: name it
            shown = f"{file} of run {self.path.name}"
        if not path.is_file():
            raise ArtifactError(f"model file missing: {shown}")
        import zipfile

        if not zipfile.is_zipfile(path):  # cut short or overwritten: Keras said "File not found"
            raise ArtifactError(f"cannot load model {shown}: not a Keras archive "
                                "(the file is damaged or cut short): copy the run again, or "
                                "train it again")
        try:
            return keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:  # keras raises many types for damaged or unsafe files
            # Keras may quote the file's full path; the message is shown on dashboard pages
            detail = (str(exc).splitlines() or [""])[0].replace(str(path), shown)
            raise ArtifactError(f"cannot load model {shown}: {type(exc).__name__}: "
                                f"{detail}") from exc


def open_run(path: str | Path, artifacts_dir: str | Path | None = None) -> Run:
    """Open and validate a run folder: complete, of a known schema, its classes and models
    listed. A model's file is checked when it is loaded (`Run.load_model`), so a run missing one
    model still serves the others. As the CLI's --run, `path` may also be "latest" or a run id
    of `artifacts_dir` (default: `default_artifacts()`, relative to the working folder)."""
    if not isinstance(path, (str, Path)):  # None gave a bare TypeError (a notebook's review)
        raise ArtifactError(f"open_run takes a run folder, a run id or 'latest', got "
                            f"{type(path).__name__}")
    given = Path(path)
    if not given.is_dir() and len(given.parts) == 1 and (path == "latest" or not given.exists()):
        # a notebook's open_run("latest") said "run folder latest does not exist" (a review)
        path = resolve_run(artifacts_dir if artifacts_dir is not None else default_artifacts(),
                           str(path))
    path = Path(path)
    if path.name == run_files.MANIFEST and path.is_file():  # a run's manifest, as --run takes
        path = path.parent
    if not path.is_dir():
        what = "is a file, not a run folder" if path.exists() else "does not exist"
        raise ArtifactError(f"run folder {shown_path(path)} {what}")
    manifest = read_json(path / run_files.MANIFEST)
    damaged = f"damaged manifest {shown_path(path / run_files.MANIFEST)}"
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{damaged}: not a JSON object")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        newer = isinstance(version, int) and not isinstance(version, bool) and (
            version > SCHEMA_VERSION)
        raise ArtifactError(f"run {path.name} has manifest schema_version {version!r}; this "
                            f"version of brain-mri-xai reads schema_version {SCHEMA_VERSION}"
                            + ("; update brain-mri-xai to read it" if newer else ""))
    if not manifest.get("complete"):
        # `train --resume` said "already complete" to the command this named (a review)
        raise ArtifactError(f"run {path.name} is incomplete: its manifest lacks \"complete\": "
                            "true, which training writes last; copy the whole run again or "
                            "train a new one (`train --resume` continues only interrupted "
                            f"runs, kept as runs/{TMP_PREFIX}<id>)")
    for key in ("class_names", "models"):
        if not manifest.get(key):
            raise ArtifactError(f"{damaged}: no {key!r}")
    names, models = manifest["class_names"], manifest["models"]
    if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
        raise ArtifactError(f"{damaged}: 'class_names' must be a list of strings, got {names!r}")
    if not isinstance(models, dict) or not all(isinstance(v, dict) for v in models.values()):
        raise ArtifactError(f"{damaged}: 'models' must map model names to objects, got "
                            f"{type(models).__name__}")
    return Run(path, manifest)
