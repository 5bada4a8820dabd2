"""Real-world images: every PIL mode a folder can hold, EXIF rotation, huge images, truncated files
among good ones, stray non-image files and symlinks; none may end in a traceback."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import honed
from honed.cli import main
from honed.data.build import load_tables
from honed.data.images import open_image
from honed.inference import predict_frame
from honed.recipe import load_recipe
from tests.test_images import write_images, write_recipe


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random mobilenet_v3_small weights standing in for a pretrained file (as in test_images.py)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v3_small.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), path)
    return path


def test_every_mode_becomes_8_bit_rgb_as_a_viewer_shows_it(tmp_path: Path) -> None:
    wide = Image.fromarray(np.array([[65535, 32896], [0, 257]], dtype=np.uint16))  # 16-bit greyscale
    wide.save(tmp_path / "wide.png")
    assert Image.open(tmp_path / "wide.png").mode.startswith("I")
    assert np.asarray(open_image(tmp_path / "wide.png"))[..., 0].tolist() == [[255, 128], [0, 1]]  # scaled, not clipped

    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (200, 10, 10, 255)  # opaque red; the rest fully transparent black
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    white = [255, 255, 255]
    assert np.asarray(open_image(tmp_path / "rgba.png")).tolist() == [[[200, 10, 10], white], [white, white]]

    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")  # pure red in CMYK
    red = np.asarray(open_image(tmp_path / "cmyk.jpg"))
    assert red.shape == (4, 4, 3) and red[..., 0].min() > 240 and red[..., 1:].max() < 15

    palette = Image.new("P", (3, 1))
    palette.putpalette([0, 0, 0, 10, 20, 30, 250, 240, 230])
    palette.putdata([1, 2, 1])
    palette.save(tmp_path / "palette.png")
    assert np.asarray(open_image(tmp_path / "palette.png")).tolist() == [[[10, 20, 30], [250, 240, 230], [10, 20, 30]]]
    Image.new("L", (2, 2), 77).save(tmp_path / "grey.png")
    assert np.asarray(open_image(tmp_path / "grey.png")).tolist() == [[[77] * 3] * 2] * 2


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((10, 20, 3), dtype=np.uint8)
    pixels[:, 10:] = 255  # stored landscape: black left half, white right half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display", as a phone held upright writes it
    Image.fromarray(pixels).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = np.asarray(open_image(tmp_path / "phone.jpg"))
    assert upright.shape == (20, 10, 3)  # portrait
    assert upright[:5].mean() < 30 and upright[-5:].mean() > 225  # the black half is now on top


def _messy_folder(root: Path) -> Path:
    """Good PNGs in every mode, a truncated JPEG, stray files, a symlinked file and a symlinked folder."""
    write_images(root)
    Image.new("L", (16, 16), 40).save(root / "dark" / "grey.png")
    Image.new("RGBA", (16, 16), (215, 215, 215, 128)).save(root / "light" / "alpha.png")
    Image.new("CMYK", (16, 16), (0, 0, 0, 200)).save(root / "dark" / "cmyk.jpg")
    Image.fromarray(np.full((16, 16), 60000, dtype=np.uint16)).save(root / "light" / "wide.png")
    good = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good, "JPEG")
    (root / "dark" / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (root / "dark" / "notes.txt").write_text("not an image", encoding="utf-8")
    (root / "light" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    elsewhere = root.parent / "elsewhere"
    write_images(elsewhere, per_class=2)
    os.symlink(elsewhere / "light" / "0.png", root / "light" / "linked.png")
    os.symlink(elsewhere / "dark", root / "dark" / "more")
    return root


def test_a_messy_folder_trains_when_bad_rows_are_skipped(weights: Path, tmp_path: Path) -> None:
    root = _messy_folder(tmp_path / "images")
    recipe = load_recipe(write_recipe(tmp_path, weights, root), {"data.skip_bad_rows": True})
    tables = load_tables(recipe)
    files = sorted(Path(p).name for f in tables.frames.values() for p in f["x"])
    assert len(files) == 12 + 4 + 1 + 2  # 12 written, 4 modes, the linked file, 2 through the linked folder
    assert "truncated.jpg" not in files and "linked.png" in files and "notes.txt" not in files
    notes = " | ".join(tables.notes)
    assert "ignored 2 files that are not images (dark/notes.txt, light/.DS_Store)" in notes
    assert "skipped 1 unreadable images (data.skip_bad_rows): truncated.jpg" in notes
    run = honed.fit(recipe, quiet=True)
    assert len(predict_frame(run.model_dir, [str(root / "light" / "wide.png"), str(root / "dark" / "cmyk.jpg")])) == 2


def test_a_truncated_jpeg_stops_training_in_one_line(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _messy_folder(tmp_path / "images")
    assert main(["train", str(write_recipe(tmp_path, weights, root)), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "truncated.jpg' is unreadable or corrupt" in lines[0] and "skip_bad_rows" not in lines[0]


@pytest.fixture(scope="module")
def image_model(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("imgrun")
    write_images(folder / "images")
    return honed.fit(write_recipe(folder, weights, folder / "images"), quiet=True).model_dir


def test_predict_reads_a_10000_pixel_square_and_refuses_a_bomb(
    image_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "in" / "big.png"
    big.parent.mkdir()
    Image.new("L", (10_000, 10_000), 215).save(big)  # 100 Mpx: over PIL's warning limit, under its error limit
    with _no_bomb_warning():
        out = predict_frame(image_model, big.parent)
    assert len(out) == 1 and out["input"].iloc[0] == str(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000_000)  # a stricter limit: 100 Mpx is now a bomb
    assert main(["predict", str(image_model), str(big.parent)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "big.png' is larger than the decompression-bomb limit" in lines[0], lines


class _no_bomb_warning:
    """Fails the block if PIL's DecompressionBombWarning escapes (a legitimate big photo is not an alarm)."""

    def __enter__(self) -> None:
        import warnings

        self._catch = warnings.catch_warnings(record=True)
        self._seen = self._catch.__enter__()
        warnings.simplefilter("always")

    def __exit__(self, *exc: object) -> None:
        self._catch.__exit__(*exc)
        assert not [w for w in self._seen if issubclass(w.category, Image.DecompressionBombWarning)]
