"""Reliability and security, end to end: the CLI against a zoo of bad and odd files, damaged run
folders, a Predictor shared by many threads, and the dashboard's security defaults.

The zoo is built in a temporary folder with Pillow, numpy and pydicom (no real MRI is copied).
Every "equivalent" file in it encodes the same phantom pixels, so a correct conversion must give
exactly the probabilities of the plain PNG: a wrong rotation, channel order or bit-depth scaling
would change them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import make_dicom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300  # seconds for one CLI call on a busy 2-core machine


# --------------------------------------------------------------------------- the zoo


@dataclass(frozen=True)
class Bad:
    """An unusable file and a fragment its error line must contain."""

    name: str
    reason: str
    shown_as: str = ""  # how the error line shows the name, when it must be escaped

    @property
    def display(self) -> str:
        return self.shown_as or self.name


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def phantom(size: int = 96, seed: int = 3) -> np.ndarray:
    """A synthetic glioma slice stretched to the full 0..255 range (so 16-bit scaling is exact)."""
    from pipeline.synth import render_phantom

    img, _ = render_phantom("glioma_tumor", size, np.random.default_rng(seed))
    img = img.astype(np.float64)
    img = (img - img.min()) * (255.0 / (img.max() - img.min()))
    return np.rint(img).astype(np.uint8)


# Names a shell, a option parser, rich markup or a careless path join could trip over.
ODD_NAMES = {
    "unicode": "ünïcødé ✓ 脑.png",
    "option": "--looks-like-an-option.png",
    "shell": "a;b|c&d $(touch pwned) `x`.png",
    "spaces": "  leading and trailing spaces  .png",
    "markup": "[bold red]markup[dim].png",
    # a folder "[" holding "].png": the path contains rich's closing tag "[/]"
    "closing-tag": "[/].png",
    "quote": "it's \"quoted\".png",
}


def _by_file(rows: list[dict]) -> dict[str, dict]:
    """Result rows by file name; a series file (the multi-page TIFF: a row per page) by its
    first slice, which is what the file's first page holds."""
    out = {}
    for r in rows:
        name, _, part = Path(r["path"]).name.partition(" · ")
        if not part or part.startswith("slice 1 of"):
            out[name] = r
    return out


def build_zoo(folder: Path) -> tuple[dict[str, str], dict[str, str], list[Bad]]:
    """Write the zoo into `folder`.

    Returns (same, converted, bad): `same` maps a file name to nothing but must predict exactly
    like `reference.png`; `converted` holds other usable files (lossy or colour conversions);
    `bad` the unusable ones with the fragment of their expected error.
    """
    folder.mkdir(parents=True, exist_ok=True)
    gray = phantom()
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    files: dict[str, bytes] = {}
    same: dict[str, str] = {}
    converted: dict[str, str] = {}

    def put(name: str, data: bytes, kind: dict[str, str] | None, what: str = "") -> None:
        files[name] = data
        if kind is not None:
            kind[name] = what

    put("reference.png", _encode(Image.fromarray(rgb), "PNG"), same, "plain RGB PNG")
    put(ODD_NAMES["unicode"], _encode(Image.fromarray(gray), "PNG"), same, "grayscale PNG")
    put(ODD_NAMES["option"], _encode(Image.fromarray(gray.astype(np.uint16) * 257), "PNG"), same,
        "16-bit PNG")
    rgba = np.dstack([rgb, np.full(gray.shape, 255, np.uint8)])
    put(ODD_NAMES["shell"], _encode(Image.fromarray(rgba), "PNG"), same, "RGBA PNG, opaque")
    put(ODD_NAMES["markup"], _encode(Image.fromarray(gray).convert("P"), "PNG"), same,
        "palette PNG")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    rotated = Image.fromarray(np.ascontiguousarray(np.rot90(gray, 1)))
    put("exif-rotated.png", _encode(rotated, "PNG", exif=exif.tobytes()), same,
        "EXIF-rotated PNG")
    frames = [Image.fromarray(gray), Image.fromarray(255 - gray), Image.fromarray(gray // 2)]
    put("animated.gif", _encode(frames[0], "GIF", save_all=True, append_images=frames[1:],
                                duration=100, loop=0), same, "animated GIF (first frame)")
    put("multipage.tif", _encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
        same, "multi-page TIFF (its first page; each page is a slice)")
    put("slice.dcm", make_dicom(gray.astype(np.uint16) * 16), same, "DICOM, 16-bit")

    # control: the rotated pixels without the EXIF tag are a different picture, so they must NOT
    # predict like the reference; this proves the equality check above can fail
    put("rotated-without-exif.png", _encode(rotated, "PNG"), converted, "control")
    put("cmyk.jpg", _encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95),
        converted, "CMYK JPEG")
    put("exif-rotated.jpg", _encode(rotated, "JPEG", quality=95, exif=exif.tobytes()),
        converted, "EXIF-rotated JPEG")
    put("gray.jpg", _encode(Image.fromarray(gray), "JPEG", quality=90), converted,
        "grayscale JPEG")
    half = rgba.copy()
    half[:, :, 3] = 128
    put(ODD_NAMES["quote"], _encode(Image.fromarray(half), "PNG"), converted,
        "RGBA PNG, half transparent")
    put("tiny-but-usable.bmp", _encode(Image.fromarray(rgb[:8, :8]), "BMP"), converted,
        "8×8 BMP")
    put("wide.webp", _encode(Image.fromarray(np.hstack([rgb, rgb])), "WEBP", lossless=True),
        converted, "WebP, 2:1")

    full_jpeg = _encode(Image.fromarray(rgb), "JPEG", quality=90)
    noisy = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    full_png = _encode(Image.fromarray(noisy), "PNG")
    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b"")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("config.json", "{}")
    bad = [
        Bad("empty.jpg", "empty file"),
        Bad("random.jpg", "not an image"),
        Bad("notes.jpg", "not an image (text?)"),
        Bad("truncated.jpg", "truncated"),
        Bad("truncated.png", "truncated.png"),
        Bad("bomb.png", "too large"),
        Bad("dot.png", "too small"),
        Bad("report.dcm", "no pixel data"),
        Bad("archive.jpg", "not an image"),
        Bad(ODD_NAMES["spaces"], "empty file"),
        Bad(ODD_NAMES["closing-tag"], "not an image (text?)"),
        Bad("[italic]cut[bold].png", "truncated"),
        Bad("line\nbreak.png", "empty file", shown_as="line\\nbreak.png"),
        Bad("\x1b[31mterminal-escape\x1b[0m.jpg", "not an image",
            shown_as="\\x1b[31mterminal-escape\\x1b[0m.jpg"),
    ]
    files.update({
        "empty.jpg": b"",
        "random.jpg": np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes(),
        "notes.jpg": b"these are my notes, not a scan\n" * 20,
        "truncated.jpg": full_jpeg[: len(full_jpeg) // 2],
        "truncated.png": full_png[: len(full_png) // 2],
        "bomb.png": bomb,
        "dot.png": _encode(Image.fromarray(np.zeros((1, 1, 3), np.uint8)), "PNG"),
        "report.dcm": make_dicom(None),
        "archive.jpg": zipped.getvalue(),
        ODD_NAMES["spaces"]: b"",
        ODD_NAMES["closing-tag"]: b"[/] [/bold] not an image",
        "[italic]cut[bold].png": full_jpeg[:300],
        "line\nbreak.png": b"",
        "\x1b[31mterminal-escape\x1b[0m.jpg": b"\x00\x01\x02 binary junk" * 40,
    })
    for name, data in files.items():
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(data)
    return same, converted, bad


def add_special_files(folder: Path) -> list[Bad]:
    """Things with an image's name that are not regular files: reading them naively hangs
    (a FIFO blocks forever) or fails (a dangling or looping symlink)."""
    os.mkfifo(folder / "fifo.png")
    (folder / "dangling-link.png").symlink_to(folder / "no-such-target.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    return [Bad("fifo.png", "not a regular file"), Bad("dangling-link.png", "file not found"),
            Bad("loop.png", "cannot read")]


# --------------------------------------------------------------------------- helpers


def run_cli(*args: str, cwd: Path = ROOT, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "BRAIN_MRI_OFFLINE": "1",
           "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout, proc.stdout[-3000:]


def error_lines(stderr: str) -> list[str]:
    from helpers import stderr_lines

    return stderr_lines(stderr)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("zoo")
    same, converted, bad = build_zoo(folder)
    return folder, same, converted, bad


# --------------------------------------------------------------------------- bad files: predict


@pytest.mark.slow
def test_predict_cli_survives_the_zoo(smoke_run: Path, zoo, tmp_path: Path):
    folder, same, converted, bad = zoo
    special = tmp_path / "special"
    special.mkdir()
    (special / "folder.png").mkdir()
    bad_paths = {str(folder / b.name): b for b in bad}
    bad_paths |= {str(special / b.name): b for b in add_special_files(special)}
    bad_paths[str(special / "does-not-exist.png")] = Bad("does-not-exist.png", "file not found")
    bad_paths[str(special / "folder.png")] = Bad("folder.png", "folder")
    bad_paths["/dev/zero"] = Bad("/dev/zero", "not a regular file")  # endless: must not be read
    # `--` ends the options, so a file called --looks-like-an-option.png is a file.
    args = ["predict", "--run", str(smoke_run), "--json", "--",
            *(str(folder / n) for n in (*same, *converted)), *bad_paths]
    proc = run_cli(*args, cwd=folder)
    assert_no_traceback(proc)
    assert proc.returncode == 1, proc.stderr[-3000:]
    out = json.loads(proc.stdout)

    # one stderr line per unusable file, naming it and saying why; nothing else on stderr
    expected_bad = list(bad_paths.values())
    lines = error_lines(proc.stderr)
    assert len(lines) == len(expected_bad), "\n".join(lines)
    for b in expected_bad:
        hits = [line for line in lines if b.display in line]
        assert len(hits) == 1, (b.name, lines)
        assert b.reason in hits[0], (b.name, hits[0])
    assert {e["path"] for e in out["errors"]} == set(bad_paths)

    # every usable file predicted, by every model, with probabilities that sum to one
    results = _by_file(out["results"])
    assert set(results) == set(same) | set(converted)
    assert len(out["results"]) == len(results) + 2  # the TIFF's pages 2 and 3 too
    run_models = set(json.loads((smoke_run / "manifest.json").read_text())["models"])
    for name, row in results.items():
        assert set(row["models"]) == run_models, name
        for m, v in row["models"].items():
            assert sum(v["probs"].values()) == pytest.approx(1.0, abs=1e-4), (name, m)
            assert v["label"] == max(v["probs"], key=v["probs"].get)
    # lossless re-encodings of the same pixels predict exactly like the plain PNG
    ref = results["reference.png"]["models"]
    for name in same:
        for m, v in results[name]["models"].items():
            got = np.array(list(v["probs"].values()))
            want = np.array(list(ref[m]["probs"].values()))
            np.testing.assert_allclose(got, want, atol=1e-4, err_msg=f"{name} ({same[name]}), {m}")
    control = results["rotated-without-exif.png"]["models"]
    assert max(abs(control[m]["probs"][c] - ref[m]["probs"][c])
               for m in ref for c in ref[m]["probs"]) > 1e-3
    assert not (folder / "pwned").exists()  # the shell-looking name was never run by a shell


@pytest.mark.slow
def test_predict_cli_only_bad_files_text_output(smoke_run: Path, zoo):
    folder, _, _, bad = zoo
    proc = run_cli("predict", "--run", str(smoke_run), "--",
                   *(str(folder / b.name) for b in bad[:4]))
    assert_no_traceback(proc)
    assert proc.returncode == 1
    assert proc.stdout == ""  # nothing predicted, nothing printed as if it were
    assert len(error_lines(proc.stderr)) == 4, proc.stderr


def test_option_looking_name_without_separator_is_a_clean_usage_error(tmp_path: Path):
    proc = run_cli("predict", "--looks-like-an-option.png", cwd=tmp_path, timeout=120)
    assert_no_traceback(proc)
    assert proc.returncode == 2
    assert "--looks-like-an-option.png" in proc.stderr


# --------------------------------------------------------------------------- fuzzing every format


@pytest.fixture(scope="module")
def fuzz_seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Small valid files of every usable format in the zoo (test_images fuzzes PNG/JPEG only)."""
    folder = tmp_path_factory.mktemp("fuzz-seeds")
    same, converted, _ = build_zoo(folder)
    wanted = ("exif-rotated.png", "animated.gif", "multipage.tif", "slice.dcm", "cmyk.jpg",
              "exif-rotated.jpg", "tiny-but-usable.bmp", "wide.webp", ODD_NAMES["option"])
    return {n: (folder / n).read_bytes() for n in wanted if n in same or n in converted}


def _mutate(data: bytes, ops: list[tuple[str, int, int, bytes]]) -> bytes:
    buf = bytearray(data)
    for op, pos, value, blob in ops:
        pos = pos % max(len(buf), 1)
        if op == "flip" and buf:
            buf[pos] = value
        elif op == "truncate":
            del buf[pos:]
        elif op == "insert":
            buf[pos:pos] = blob
        elif op == "delete":
            del buf[pos:pos + 1 + value % 16]
        elif op == "repeat":  # duplicated chunks/IFDs/frames
            buf[pos:pos] = buf[pos:pos + 1 + value]
    return bytes(buf)


_OPS = st.lists(st.tuples(st.sampled_from(["flip", "truncate", "insert", "delete", "repeat"]),
                          st.integers(0, 1 << 20), st.integers(0, 255),
                          st.binary(min_size=1, max_size=12)), min_size=1, max_size=6)


@pytest.mark.timeout(600)
@settings(max_examples=300, deadline=10_000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 100), ops=_OPS)
def test_mutated_files_of_every_format_decode_and_prepare_or_refuse(fuzz_seeds, which, ops):
    """Decode, then prepare exactly as prediction does: either a clean result or ImageError,
    never another exception, and never more than the deadline (a hang fails the example)."""
    from pipeline.geometry import prepare_image
    from pipeline.images import ImageError, decode_image

    name = sorted(fuzz_seeds)[which % len(fuzz_seeds)]
    data = _mutate(fuzz_seeds[name], ops)
    try:
        img = decode_image(data, name)
    except ImageError as exc:
        assert name in str(exc)
        return
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    out = prepare_image(img, 32, crop=True)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8


# --------------------------------------------------------------------------- bad files: audit


def test_audit_cli_lists_the_zoo_as_unreadable(synth_data: Path, tmp_path: Path):
    from pipeline.names import IMAGE_EXTS

    ds = tmp_path / "dataset"
    cls = ds / "Training" / "glioma_tumor"
    same, converted, bad = build_zoo(cls)
    bad = [*bad, *add_special_files(cls)]
    shutil.copytree(synth_data / "Testing", ds / "Testing")
    n_test = sum(1 for p in (ds / "Testing").rglob("*") if p.is_file())
    # audit looks at dataset extensions only (no .gif/.webp in MRI datasets)
    usable = [n for n in (*same, *converted) if Path(n).suffix.lower() in IMAGE_EXTS]
    unusable = [b for b in bad if Path(b.name).suffix.lower() in IMAGE_EXTS]
    assert len(usable) >= 12 and len(unusable) == len(bad)

    proc = run_cli("audit", str(ds), "--json", timeout=180)
    assert_no_traceback(proc)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["n_images"] == len(usable) + len(unusable) + n_test
    assert report["n_readable"] == len(usable) + n_test
    assert report["counts"]["train"]["glioma"] == len(usable) + len(unusable)
    rel = {f"Training/glioma_tumor/{b.name}": b for b in unusable}
    assert set(report["unreadable"]) == set(rel)
    for path, b in rel.items():
        assert b.reason in report["unreadable_reasons"][path], (path, report["unreadable_reasons"])
    # the lossless re-encodings decode to the same pixels, so they form one duplicate group
    n_same = sum(1 for n in same if n in usable)
    assert report["largest_duplicate_group"] >= n_same

    text = run_cli("audit", str(ds), timeout=180)
    assert_no_traceback(text)
    assert text.returncode == 0, text.stderr[-3000:]
    assert "\x1b" not in text.stdout  # no terminal escape from a file name reaches the terminal
    assert f"unreadable: {len(unusable)}" in text.stdout
    lines = text.stdout.splitlines()
    for b in unusable:
        hits = [line for line in lines if f"Training/glioma_tumor/{b.display}:" in line]
        assert len(hits) == 1, (b.name, [line for line in lines if "✗" in line])


# --------------------------------------------------------------------------- bad files: explain


@pytest.mark.slow
def test_explain_cli_survives_the_zoo(smoke_run: Path, zoo, tmp_path: Path):
    folder, same, converted, bad = zoo
    # names with rich markup or control characters, and two files with one stem
    # (exif-rotated.png/.jpg), are covered by the tests below
    usable = [n for n in (*same, *converted) if "[" not in n and n != "exif-rotated.jpg"]
    unusable = [b for b in bad if "[" not in b.name and not b.shown_as]
    out = tmp_path / "explained"
    proc = run_cli("explain", "--run", str(smoke_run), "--out", str(out), "--",
                   *(str(folder / n) for n in usable), *(str(folder / b.name) for b in unusable))
    assert_no_traceback(proc)
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = error_lines(proc.stderr)
    for b in unusable:
        hits = [line for line in lines if b.display in line]
        assert len(hits) == 1 and b.reason in hits[0], (b.name, lines)
    for n in usable:
        assert not [line for line in lines if n in line], (n, lines)  # good files: no error
    report = json.loads((out / "explain.json").read_text())
    assert set(_by_file(report["images"])) == set(usable)
    assert {Path(e["path"]).name for e in report["errors"]} == {b.name for b in unusable}
    overlays = [v["overlay"] for r in report["images"] for v in r["models"].values()]
    assert len(set(overlays)) == len(overlays)  # one file per image and model, none shared
    for name in overlays:
        assert (out / name).is_file() and (out / name).parent == out
    by_name = {n: r["models"] for n, r in _by_file(report["images"]).items()}
    for n in same:
        if n in by_name:
            for m, v in by_name[n].items():
                assert v["predicted"] == by_name["reference.png"][m]["predicted"], (n, m)


def _explain_in_process(smoke_run: Path, out: Path, files: list[Path]):
    from typer.testing import CliRunner

    from pipeline.cli import app

    return CliRunner().invoke(app, ["explain", "--run", str(smoke_run), "--out", str(out),
                                    "--model", "custom_cnn", "--", *map(str, files)])


def _clean_exit(result, code: int) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert result.exit_code == code, (result.exit_code, result.output[-2000:])


@pytest.mark.slow
def test_explain_cli_with_only_unusable_files_exits_cleanly(smoke_run: Path, zoo, tmp_path):
    folder, _, _, bad = zoo
    result = _explain_in_process(smoke_run, tmp_path / "o", [folder / b.name for b in bad[:3]])
    _clean_exit(result, 1)


@pytest.mark.slow
def test_explain_cli_prints_odd_names_verbatim_on_one_line(smoke_run: Path, zoo, tmp_path):
    folder, _, _, bad = zoo
    odd = [b for b in bad if "[" in b.name or b.shown_as]
    files = [folder / "reference.png", *(folder / b.name for b in odd)]
    result = _explain_in_process(smoke_run, tmp_path / "o", files)
    _clean_exit(result, 1)
    lines = error_lines(result.stderr)
    for b in odd:
        assert len([line for line in lines if b.display in line]) == 1, (b.name, lines)


@pytest.mark.slow
def test_explain_cli_same_stem_images_get_their_own_overlays(smoke_run: Path, zoo, tmp_path):
    folder, _, _, _ = zoo
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = tmp_path / "a" / "scan.png"
    second = tmp_path / "b" / "scan.png"
    third = tmp_path / "a" / "scan.jpg"
    first.write_bytes((folder / "reference.png").read_bytes())
    second.write_bytes((folder / "rotated-without-exif.png").read_bytes())
    third.write_bytes((folder / "exif-rotated.jpg").read_bytes())
    out = tmp_path / "o"
    result = _explain_in_process(smoke_run, out, [first, second, third])
    _clean_exit(result, 0)
    rows = json.loads((out / "explain.json").read_text())["images"]
    assert [r["path"] for r in rows] == [str(first), str(second), str(third)]
    overlays = [r["models"]["custom_cnn"]["overlay"] for r in rows]
    assert len(set(overlays)) == 3, overlays
    assert sorted(p.name for p in out.glob("*.png")) == sorted(overlays)
    for row, overlay in zip(rows, overlays, strict=True):
        assert overlay.startswith(row["overlay_base"] + "."), (row, overlay)
    assert rows[2]["overlay_base"] == "scan.jpg"  # a name shared by no other input stays plain


def test_overlay_bases_are_distinct_and_stable(tmp_path: Path):
    from pipeline.explain.overlay_text import OVERLAY_NAME_BYTES, overlay_bases

    a, b = tmp_path / "a" / "scan.png", tmp_path / "b" / "scan.png"
    long = tmp_path / ("脑" * 200 + ".png")
    paths = [a, b, tmp_path / "Scan.PNG", tmp_path / "line\nbreak.png", a, long]
    bases = overlay_bases(paths)
    assert len({x.casefold() for x in bases}) == len(paths), bases  # also on case-blind disks
    assert bases[3] == "line_break.png"
    assert bases[4] == bases[0] + "-2"  # the same file twice
    assert len(bases[5].encode()) <= OVERLAY_NAME_BYTES and bases[5].startswith("脑")
    # a shared name's suffix comes from the path, not from the argument order
    assert overlay_bases([b, a]) == [bases[1], bases[0]]
    assert overlay_bases([tmp_path / "x.png", tmp_path / "x.jpg"]) == ["x.png", "x.jpg"]


# --------------------------------------------------------------------------- damaged artifacts


def _edit_manifest(run_dir: Path, **changes) -> None:
    m = json.loads((run_dir / "manifest.json").read_text())
    for key, value in changes.items():
        if key == "model_info":
            for name, info in value.items():
                m["models"][name] = {**m["models"][name], **info}
                m["models"][name] = {k: v for k, v in m["models"][name].items() if v is not None}
        else:
            m[key] = value
    (run_dir / "manifest.json").write_text(json.dumps(m))


def _lambda_model(run_dir: Path) -> None:
    import keras

    size = json.loads((run_dir / "manifest.json").read_text())["models"]["custom_cnn"][
        "image_size"]
    inp = keras.Input((size, size, 3))
    x = keras.layers.Lambda(lambda t: t / 255.0)(inp)  # arbitrary code: refused by safe_mode
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inp, keras.layers.Dense(4, activation="softmax")(x)).save(
        run_dir / "custom_cnn" / "model.keras")


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DAMAGE = {
    "missing manifest": (lambda d: (d / "manifest.json").unlink(), "missing file"),
    "truncated manifest": (lambda d: _truncate(d / "manifest.json"), "not valid JSON"),
    "manifest not UTF-8": (lambda d: (d / "manifest.json").write_bytes(b"\xff\xfe{\x00"),
                           "not valid JSON"),
    "manifest is a folder": (lambda d: ((d / "manifest.json").unlink(),
                                        (d / "manifest.json").mkdir()), "manifest.json"),
    "manifest is a list": (lambda d: (d / "manifest.json").write_text("[1, 2]"),
                           "not a JSON object"),
    "unknown schema": (lambda d: _edit_manifest(d, schema_version=99), "schema_version 99"),
    "incomplete": (lambda d: _edit_manifest(d, complete=False), "incomplete"),
    "models is a list": (lambda d: _edit_manifest(d, models=["custom_cnn"]), "models"),
    "class names mismatch": (lambda d: _edit_manifest(d, class_names=["a", "b", "c"]),
                             "class"),
    "image size mismatch": (lambda d: _edit_manifest(d, model_info={"custom_cnn": {
        "image_size": 200}}), "image_size"),
    "image size missing": (lambda d: _edit_manifest(d, model_info={"custom_cnn": {
        "image_size": None}}), "image_size"),
    "model is random bytes": (lambda d: (d / "custom_cnn" / "model.keras").write_bytes(
        np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes()),
        "cannot load model"),
    "model truncated": (lambda d: _truncate(d / "custom_cnn" / "model.keras"),
                        "cannot load model"),
    "model missing": (lambda d: (d / "custom_cnn" / "model.keras").unlink(),
                      "model file missing"),
    "lambda layer": (_lambda_model, "deserialization of a `Lambda` layer"),  # safe_mode
}


@pytest.fixture()
def run_copy(smoke_run: Path, tmp_path: Path) -> Path:
    """A copy of the smoke run in its own artifacts folder (the fixture is never modified)."""
    art = tmp_path / "artifacts"
    dst = art / "runs" / smoke_run.name
    shutil.copytree(smoke_run, dst)
    (art / "latest").write_text(smoke_run.name + "\n")
    return dst


@pytest.mark.slow
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_predict_cli_reports_a_damaged_run_in_one_line(run_copy: Path, zoo, damage: str):
    folder = zoo[0]
    make, fragment = DAMAGE[damage]
    make(run_copy)
    art = run_copy.parent.parent
    proc = run_cli("predict", "--artifacts", str(art), "--", str(folder / "reference.png"),
                   timeout=180)
    assert_no_traceback(proc)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, lines
    assert lines[0].startswith("error:") and fragment in lines[0], lines[0]
    assert proc.stdout == ""


@pytest.mark.parametrize(("latest", "fragment"), [
    (b"", "is empty"),
    (b"20990101-000000-nothere\n", "not found"),
    (b"\xff\xfe\x00garbage", "latest"),
    (None, "no runs yet"),
])
def test_predict_cli_reports_a_bad_latest_in_one_line(tmp_path: Path, zoo, latest, fragment):
    art = tmp_path / "artifacts"
    (art / "runs").mkdir(parents=True)
    if latest is not None:
        (art / "latest").write_bytes(latest)
    proc = run_cli("predict", "--artifacts", str(art), "--", str(zoo[0] / "reference.png"),
                   timeout=120)
    assert_no_traceback(proc)
    assert proc.returncode == 2
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and fragment in lines[0], lines


def test_predict_cli_run_name_with_markup_is_reported_verbatim(tmp_path: Path, zoo):
    proc = run_cli("predict", "--artifacts", str(tmp_path), "--run", "[/]nope[bold]", "--",
                   str(zoo[0] / "reference.png"), timeout=120)
    assert_no_traceback(proc)
    assert proc.returncode == 2
    assert "[/]nope[bold]" in proc.stderr


# --------------------------------------------------------------------------- concurrency


@pytest.mark.slow
def test_predictor_shared_by_eight_threads_matches_single_threaded(smoke_run: Path,
                                                                   synth_data: Path):
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.artifacts import open_run
    from pipeline.images import read_image
    from pipeline.predict import Predictor

    paths = sorted(synth_data.glob("Testing/*/*.png"))[:16]
    imgs = [read_image(p) for p in paths]
    reference = Predictor(open_run(smoke_run))
    want = [reference.predict_images([im]) for im in imgs]  # one image at a time, one thread
    # distinct images give distinct answers, so a mix-up between threads would be visible
    mob = np.stack([w["mobilenetv2"][0] for w in want])
    assert len({tuple(np.round(row, 4)) for row in mob}) == len(imgs)

    n_threads, rounds = 8, 4
    shared = Predictor(open_run(smoke_run))  # cold: the first calls of all threads race
    start = threading.Barrier(n_threads)

    def work(t: int) -> list[tuple[list[int], dict[str, np.ndarray]]]:
        mine = [i for i in range(len(imgs)) if i % n_threads == t]
        done = []
        start.wait()
        for r in range(rounds):
            order = mine[r % len(mine):] + mine[: r % len(mine)]
            if r % 2:  # mix batch sizes: a single image, then the thread's whole share
                order = order[:1]
            done.append((order, shared.predict_images([imgs[i] for i in order])))
        return done

    with ThreadPoolExecutor(n_threads) as pool:
        results = list(pool.map(work, range(n_threads)))
    checked = 0
    for per_thread in results:
        for order, probs in per_thread:
            for k, i in enumerate(order):
                for m in shared.models:
                    np.testing.assert_allclose(probs[m][k], want[i][m][0], atol=1e-5,
                                               err_msg=f"image {i}, model {m}")
                    checked += 1
    # per thread: its 2 images, 1, 2, 1 over the four rounds, for each model
    assert checked == n_threads * len(shared.models) * (2 + 1 + 2 + 1)


@pytest.mark.slow
def test_predictors_loaded_concurrently_are_independent_and_correct(smoke_run: Path,
                                                                     synth_data: Path):
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.artifacts import open_run
    from pipeline.images import read_image
    from pipeline.predict import Predictor

    imgs = [read_image(p) for p in sorted(synth_data.glob("Testing/*/*.png"))[:4]]
    want = Predictor(open_run(smoke_run)).predict_images(imgs)
    start = threading.Barrier(4)

    def load_and_predict(_: int) -> dict[str, np.ndarray]:
        start.wait()  # four keras.saving.load_model calls at once
        return Predictor(open_run(smoke_run)).predict_images(imgs)

    with ThreadPoolExecutor(4) as pool:
        for got in pool.map(load_and_predict, range(4)):
            for m in want:
                np.testing.assert_allclose(got[m], want[m], atol=1e-5)


# --------------------------------------------------------------------------- security defaults


def test_streamlit_config_keeps_xsrf_on_and_caps_uploads():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11; CI runs 3.11
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    server = config["server"]
    assert server["enableXsrfProtection"] is True
    assert server.get("enableCORS", True) is True  # XSRF protection needs CORS protection on
    assert 0 < server["maxUploadSize"] <= 50  # megabytes
    assert config.get("browser", {}).get("gatherUsageStats") is False


def test_decoding_an_upload_never_touches_the_file_system(zoo):
    """Upload names are labels only: a path-like name is never opened, read or written."""
    from pipeline.geometry import prepare_image
    from pipeline.images import ImageError, decode_image

    folder, same, converted, bad = zoo
    payloads = {n: (folder / n).read_bytes() for n in (*same, *converted)}
    payloads.update({b.name: (folder / b.name).read_bytes() for b in bad})
    for name, data in payloads.items():  # warm up: plugins and codecs import lazily
        with contextlib.suppress(ImageError):
            decode_image(data, name)
    events: list[tuple] = []
    armed = threading.Event()

    def hook(event: str, args: tuple) -> None:
        # Audit hooks cannot be removed: the flag keeps this one idle outside the test.
        if armed.is_set() and threading.current_thread() is threading.main_thread() and \
                event in ("open", "os.remove", "os.rename", "os.mkdir", "shutil.copyfile"):
            events.append((event, args[:2]))

    sys.addaudithook(hook)
    decoded = 0
    armed.set()
    try:
        for name, data in payloads.items():
            for label in (name, f"../../../etc/{name}", str(folder / "reference.png")):
                try:
                    prepare_image(decode_image(data, label), 32)
                    decoded += 1
                except ImageError:
                    pass
            with pytest.raises(ImageError):  # the name of a real, valid image is not read
                decode_image(b"", str(folder / "reference.png"))
    finally:
        armed.clear()
    assert decoded >= 3 * len(same)
    assert events == []


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_evaluate_external_folder_with_a_fifo_finishes(run_copy: Path, synth_data: Path,
                                                        tmp_path: Path):
    from pipeline.evaluate import evaluate_run

    ext = tmp_path / "external"
    for cls in sorted((synth_data / "Testing").iterdir()):  # 3 images per class: quick when fixed
        (ext / cls.name).mkdir(parents=True)
        for img in sorted(cls.glob("*.png"))[:3]:
            shutil.copy(img, ext / cls.name / img.name)
    os.mkfifo(ext / "glioma_tumor" / "fifo.png")
    # the overlap check must still hash the regular files: add a byte-identical training image
    # (the smoke run pools Training/ and Testing/, so some Testing copies are training images too)
    splits = json.loads((run_copy / "splits.json").read_text())
    rel = next(r["path"] for r in splits["train"] if "/glioma_tumor/" in r["path"])
    shutil.copy(synth_data / rel, ext / "glioma_tumor" / "copied-from-training.png")
    seen = {hashlib.sha1((synth_data / r["path"]).read_bytes()).digest()
            for r in (*splits["train"], *splits["val"])}
    expected = {f.relative_to(ext).as_posix() for f in ext.rglob("*.png")
                if f.is_file() and hashlib.sha1(f.read_bytes()).digest() in seen}
    summary = evaluate_run(run_copy, data_dir=ext, name="with-fifo", n_boot=100)
    assert summary["source"]["n_unreadable"] == 1
    overlap = summary["source"]["overlap_with_training"]
    # every byte-identical copy is found (pixel for pixel: exact), fewer than 20: all listed
    listed = {*overlap["examples"].get("train", []), *overlap["examples"].get("val", [])}
    assert overlap["checked"] and expected <= listed, (overlap, expected)
    assert "glioma_tumor/copied-from-training.png" in expected
