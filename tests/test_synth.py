"""Synthetic phantoms: layout, determinism, masks matching the drawn tumour, location rules, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.synth import CLASSES, SPLITS, SynthError, generate, render_phantom

SIZE = 128
TUMOURS = [c for c in CLASSES if c != "no_tumor"]


def _read(path: Path) -> np.ndarray:
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert arr is not None, f"unreadable PNG {path}"
    return arr


def _files(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "phantoms"
    summary = generate(out, per_class=6, size=SIZE, seed=3, test_fraction=0.34)
    return out, summary


# ---------------------------------------------------------------- layout, counts, metadata


def test_layout_counts_and_formats(synth_dir: tuple[Path, dict]) -> None:
    out, summary = synth_dir
    # round(6 * 0.34) = 2 test images per class, 4 training.
    assert summary["counts"] == {
        "Training": {c: 4 for c in CLASSES}, "Testing": {c: 2 for c in CLASSES}}
    assert summary["n_images"] == 24
    for split in SPLITS:
        for label in CLASSES:
            files = sorted((out / split / label).glob("*.png"))
            assert len(files) == summary["counts"][split][label]
            for f in files:
                img = _read(f)
                assert img.dtype == np.uint8 and img.shape == (SIZE, SIZE), (f, img.shape)
                # A real picture: a dark background and a bright head, not a flat image.
                assert img[0, 0] < 60 and img.max() > 180, f
    assert sorted(p.name for p in out.iterdir()) == [
        "README.txt", "Testing", "Training", "masks", "synth.json"]
    readme = (out / "README.txt").read_text()
    assert "SYNTHETIC" in readme and "seed: 3" in readme and "version" in readme
    meta = json.loads((out / "synth.json").read_text())
    assert meta["complete"] is True and meta["seed"] == 3 and meta["size"] == SIZE
    assert meta["per_class"] == 6 and meta["counts"] == summary["counts"]


def test_every_image_has_a_binary_mask_nonempty_exactly_for_tumours(
        synth_dir: tuple[Path, dict]) -> None:
    out, _ = synth_dir
    images = sorted(out.glob("T*/*/*.png"))
    masks = sorted((out / "masks").rglob("*.png"))
    assert len(images) == len(masks) == 24
    for img_path in images:
        rel = img_path.relative_to(out)
        mask = _read(out / "masks" / rel)
        assert mask.shape == (SIZE, SIZE) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}, rel
        label = rel.parts[1]
        assert mask.any() == (label != "no_tumor"), rel


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes_and_other_seed_differs(
        synth_dir: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = synth_dir
    again = generate(tmp_path / "again", per_class=6, size=SIZE, seed=3, test_fraction=0.34,
                     workers=1)  # one thread versus the fixture's pool: order must not matter
    assert again["counts"] == synth_dir[1]["counts"]
    assert _files(out) == _files(tmp_path / "again")

    other = tmp_path / "other"
    generate(other, per_class=6, size=SIZE, seed=4, test_fraction=0.34)
    a, b = _files(out), _files(other)
    images = [k for k in a if k.startswith(("Training", "Testing"))]
    assert images and all(a[k] != b[k] for k in images)


def test_images_do_not_depend_on_the_split(synth_dir: tuple[Path, dict], tmp_path: Path) -> None:
    """Image i of a class is the same picture whichever split test_fraction puts it in."""
    out, _ = synth_dir
    generate(tmp_path / "all", per_class=6, size=SIZE, seed=3, test_fraction=0.0)
    for label in CLASSES:
        assert not any((tmp_path / "all" / "Testing" / label).iterdir())
        for img in (tmp_path / "all" / "Training" / label).glob("*.png"):
            src = next(out.glob(f"T*/{label}/{img.name}"))
            assert src.read_bytes() == img.read_bytes(), img.name


# ---------------------------------------------------------------- mask and tumour agree


def _head(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Head found in the image alone: filled mask, centroid, axes (major points down), half-axes."""
    bw = (cv2.GaussianBlur(img, (0, 0), 2) > 40).astype(np.uint8)
    contours, _ = cv2.findContours(bw, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    head = np.zeros_like(bw)
    cv2.drawContours(head, [max(contours, key=cv2.contourArea)], -1, 1, thickness=-1)
    ys, xs = np.nonzero(head)
    centre = np.array([xs.mean(), ys.mean()])
    evals, evecs = np.linalg.eigh(np.cov(np.stack([xs - centre[0], ys - centre[1]])))
    major = evecs[:, 1] if evecs[1, 1] >= 0 else -evecs[:, 1]  # points to the image bottom
    minor = np.array([-major[1], major[0]])
    # For a uniform ellipse the half-axis is twice the std along it.
    return head, centre, major, minor, 2 * float(np.sqrt(evals[1])), 2 * float(np.sqrt(evals[0]))


def _samples(label: str, n: int, seed: int = 11) -> list[tuple[np.ndarray, np.ndarray]]:
    ci = CLASSES.index(label)
    return [render_phantom(label, SIZE, np.random.default_rng((seed, ci, i))) for i in range(n)]


@pytest.mark.parametrize("label", TUMOURS)
def test_mask_covers_a_visible_tumour_inside_the_head(label: str) -> None:
    contrasts = []
    for img, mask in _samples(label, 24):
        inside = mask > 0
        head = _head(img)[0]
        # The mask lies inside the head, and not on its outer rim (scalp).
        depth = cv2.distanceTransform(head, cv2.DIST_L2, 5)
        assert head[inside].all() and depth[inside].min() >= 2
        # The masked pixels differ from the parenchyma just around them (a 3 px ring).
        ring = (cv2.dilate(mask, np.ones((7, 7), np.uint8)) > 0) & ~inside & (head > 0)
        pix = img.astype(float)
        contrasts.append(np.abs(pix[inside] - pix[ring].mean()).mean())
    assert min(contrasts) > 8, contrasts
    assert np.median(contrasts) > 30, contrasts


@pytest.mark.parametrize("label", TUMOURS)
def test_mask_is_exactly_where_the_tumour_changed_the_image(label: str) -> None:
    """Same seed with and without the tumour: anatomy and acquisition are shared (separate rng
    streams), so the pixels that change are the tumour's, and the mask must be where they are."""
    for i in range(8):
        img_t, mask = render_phantom(label, SIZE, np.random.default_rng(100 + i))
        img_n, none = render_phantom("no_tumor", SIZE, np.random.default_rng(100 + i))
        assert not none.any()
        changed = cv2.absdiff(img_t, img_n) > 25
        inside = mask > 0
        # Glioma margins are soft (alpha below 0.5 still tints a few pixels): allow 3 px.
        grow = 7 if label == "glioma_tumor" else 3
        near = cv2.dilate(mask, np.ones((grow, grow), np.uint8)) > 0
        # Most tumour pixels changed visibly (soft glioma margins change less near the edge).
        assert changed[inside].mean() > 0.45, (label, i, changed[inside].mean())
        assert near[changed].mean() > 0.97, (label, i, near[changed].mean())


# ---------------------------------------------------------------- location rules


def _frame(img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Mask pixels in head coordinates: across (-1..1, left-right) and along (down = +)."""
    _, centre, major, minor, half_long, half_short = _head(img)
    ys, xs = np.nonzero(mask)
    d = np.stack([xs - centre[0], ys - centre[1]], axis=1)
    return d @ minor / half_short, d @ major / half_long, half_long, half_short


def test_pituitary_sits_small_on_the_midline_near_the_skull_base() -> None:
    for img, mask in _samples("pituitary_tumor", 30):
        across, along, _, _ = _frame(img, mask)
        # The midline is estimated from the image's moments, so allow a few degrees of error.
        assert abs(across.mean()) < 0.15, across.mean()
        assert along.mean() > 0.35, along.mean()  # lower part of the head
        assert (mask > 0).mean() < 0.012  # small: under ~1.2 % of the image


def _depth_below_surface(label: str) -> list[float]:
    """Per image: distance (share of the side) from the head edge to the mask's nearest pixel."""
    depths = []
    for img, mask in _samples(label, 30):
        depth = cv2.distanceTransform(_head(img)[0], cv2.DIST_L2, 5)
        depths.append(float(depth[mask > 0].min()) / SIZE)
    return depths


def test_meningioma_touches_the_inner_skull_and_gliomas_lie_deeper() -> None:
    meningioma, glioma = _depth_below_surface("meningioma_tumor"), _depth_below_surface(
        "glioma_tumor")
    # Scalp + skull + CSF are at most ~7 % of the side (a little more along the long axis and
    # after blurring the edge): every meningioma reaches into that band...
    assert max(meningioma) < 0.1, meningioma
    # ...while a typical glioma stays well inside the brain.
    assert np.median(glioma) > max(meningioma), (glioma, meningioma)


def test_glioma_is_irregular_and_mostly_in_one_hemisphere() -> None:
    sides, circularity, men_circ = [], [], []
    for img, mask in _samples("glioma_tumor", 40):
        across, _, _, _ = _frame(img, mask)
        sides.append(max((across > 0).mean(), (across < 0).mean()))
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        c = max(contours, key=cv2.contourArea)
        circularity.append(4 * np.pi * cv2.contourArea(c) / cv2.arcLength(c, True) ** 2)
    for _, mask in _samples("meningioma_tumor", 40):
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        c = max(contours, key=cv2.contourArea)
        men_circ.append(4 * np.pi * cv2.contourArea(c) / cv2.arcLength(c, True) ** 2)
    # Crossing the midline is rare: at least 85 % keep >= 80 % of their pixels on one side.
    assert np.mean(np.array(sides) >= 0.8) >= 0.85, sides
    # Perturbed outlines: clearly less circular than the round meningiomas.
    assert np.median(circularity) < np.median(men_circ) - 0.08, (circularity, men_circ)


def test_classes_are_not_separable_by_global_intensity_statistics() -> None:
    """A model must look at the mass: whole-image histograms should be near chance (25 %)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels = [], []
    for ci, label in enumerate(CLASSES):
        for i in range(60):
            img, _ = render_phantom(label, 96, np.random.default_rng((21, ci, i)))
            hist = np.histogram(img, bins=16, range=(0, 256))[0] / img.size
            features.append(np.r_[hist, img.mean() / 255, img.std() / 255])
            labels.append(ci)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    accuracy = cross_val_score(clf, np.array(features), np.array(labels), cv=4).mean()
    assert accuracy < 0.45, accuracy


# ---------------------------------------------------------------- errors and overwrite


def test_bad_arguments_raise_clear_errors(tmp_path: Path) -> None:
    for kwargs, word in [({"per_class": 0}, "per_class"), ({"per_class": 2, "size": 32}, "size"),
                         ({"per_class": 2, "test_fraction": 1.0}, "test_fraction"),
                         ({"per_class": 2, "seed": -1}, "seed")]:
        with pytest.raises(SynthError, match=word):
            generate(tmp_path / "bad", **kwargs)
    assert not (tmp_path / "bad").exists()
    with pytest.raises(SynthError, match="unknown class"):
        render_phantom("astrocytoma", SIZE, np.random.default_rng(0))


def test_refuses_foreign_folders_and_overwrites_only_when_asked(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(SynthError, match="not a previous synth output"):
        generate(foreign, per_class=1, size=64, overwrite=True)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]

    out = tmp_path / "out"
    generate(out, per_class=2, size=64, seed=1)
    with pytest.raises(SynthError, match="overwrite"):
        generate(out, per_class=1, size=64, seed=2)
    summary = generate(out, per_class=1, size=64, seed=2, overwrite=True)
    assert summary["n_images"] == 4
    assert len(list(out.glob("T*/*/*.png"))) == 4  # the old 8 images are gone
    assert json.loads((out / "synth.json").read_text())["seed"] == 2


def test_progress_callback_reaches_total(tmp_path: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    generate(tmp_path / "p", per_class=2, size=64, progress=lambda *a: calls.append(a))
    assert calls[0][1:] == (0, 8) and calls[-1][1:] == (8, 8)
    assert [c[1] for c in calls] == sorted(c[1] for c in calls)


# ---------------------------------------------------------------- CLI


def test_cli_writes_phantoms_and_rejects_bad_arguments(tmp_path: Path) -> None:
    from pipeline.cli import app

    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(app, ["synth", str(out), "--per-class", "2", "--size", "64",
                              "--seed", "5", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "wrote 8 phantoms" in res.output
    assert len(list(out.glob("T*/*/*.png"))) == 8 and len(list(out.rglob("masks/*/*/*.png"))) == 8

    for args, word in [(["--per-class", "0"], "--per-class"), (["--per-class", "2", "--size",
                                                                 "32"], "--size")]:
        res = runner.invoke(app, ["synth", str(tmp_path / "bad"), *args])
        assert res.exit_code != 0 and word in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "bad").exists()

    res = runner.invoke(app, ["synth", str(out), "--per-class", "1", "--size", "64", "--quiet"])
    assert res.exit_code != 0 and "--overwrite" in res.output
    res = runner.invoke(app, ["synth", str(out), "--per-class", "1", "--size", "64", "--quiet",
                              "--overwrite"])
    assert res.exit_code == 0 and "wrote 4 phantoms" in res.output


def test_run_makes_an_interrupted_phantom_set_again(tmp_path: Path) -> None:
    """`run` (and so `make demo`) reused any folder holding synth.json, which `generate` writes
    first with "complete": false: after a Ctrl-C it trained on a half-made dataset."""
    from pipeline.cli.train_cmds import _synthetic_data

    out = tmp_path / "synth"
    generate(out, per_class=3, size=64, seed=0)
    complete = sorted(p.relative_to(out) for p in out.rglob("*.png"))
    meta = json.loads((out / "synth.json").read_text())
    # as an interrupted generation leaves it: the file says incomplete, images are missing
    (out / "synth.json").write_text(json.dumps({**meta, "complete": False}))
    for png in list((out / "Training").rglob("*.png"))[2:]:
        png.unlink()
    assert _synthetic_data(out, per_class=3) == out
    assert json.loads((out / "synth.json").read_text())["complete"] is True
    assert sorted(p.relative_to(out) for p in out.rglob("*.png")) == complete
    # a complete set of the asked size is reused as it is
    stamp = (out / "synth.json").stat().st_mtime_ns
    _synthetic_data(out, per_class=3)
    assert (out / "synth.json").stat().st_mtime_ns == stamp


def test_an_interrupt_drops_the_phantoms_still_queued(tmp_path: Path) -> None:
    """Ctrl-C at 241 of 2400 phantoms returned only once all 2400 were written (the pool's
    `with` waited for every queued job): the queued ones are dropped now."""
    def interrupt(stage: str, done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "big", per_class=100, size=64, seed=0, progress=interrupt,
                 workers=1)
    written = list((tmp_path / "big").rglob("*.png"))
    assert 0 < len(written) < 2 * 400 // 4, len(written)  # of 800 images and masks: a few


def test_synth_and_run_make_as_many_phantoms_unless_told() -> None:
    """`synth --per-class` was required while `run` made 150 a class (a review): one default."""
    import typer.main

    from pipeline.cli import app
    from pipeline.synth import PER_CLASS

    commands = typer.main.get_command(app).commands
    for name in ("synth", "run"):
        option = next(p for p in commands[name].params if p.name == "per_class")
        assert option.default == PER_CLASS and not option.required, name
