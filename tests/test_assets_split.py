"""Split-zip assets (all-mpnet-base-v2 ships as five packages): assembly is checked, atomic and offline.

The assembly logic runs on a small fake split zip built here; the one test that loads the real mpnet
is marked `mpnet` and skipped (with the reason) where set-up has not assembled it."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from honed import assets
from honed.errors import HonedError


def _split_zip(tmp_path: Path, parts: int = 3) -> tuple[list[Path], str]:
    """A zip holding model/ (config.json + a weights file), cut into `parts` files; and its SHA-256."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model/config.json", '{"model_type": "fake"}')
        archive.writestr("model/weights.bin", bytes(range(256)) * 64)
        archive.writestr("other/ignored.txt", "not part of the model")
    data = buffer.getvalue()
    step = len(data) // parts + 1
    paths = []
    for i in range(parts):
        path = tmp_path / f"part.zip.{i + 1:03d}"
        path.write_bytes(data[i * step : (i + 1) * step])
        paths.append(path)
    return paths, hashlib.sha256(data).hexdigest()


def test_assemble_split_writes_the_folder_once_with_its_marker(tmp_path: Path) -> None:
    parts, digest = _split_zip(tmp_path)
    root = tmp_path / "assets"
    folder = assets.assemble_split(parts, digest, "model", root, "fake")
    assert folder == root / "model" and (folder / "config.json").read_text() == '{"model_type": "fake"}'
    assert (folder / "weights.bin").read_bytes() == bytes(range(256)) * 64
    assert not (root / "other").exists() and [p.name for p in root.iterdir()] == ["model"]  # temp folder gone
    fake = assets.SplitZip("fake", (), digest, "model")
    assert assets.assembled(fake, root) == folder
    (folder / "weights.bin").write_bytes(b"truncated")  # a damaged copy is not taken as assembled
    assert assets.assembled(fake, root) is None


def test_checksum_mismatch_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    parts, digest = _split_zip(tmp_path)
    damaged = bytearray(parts[1].read_bytes())
    damaged[5] ^= 0xFF
    parts[1].write_bytes(bytes(damaged))
    root = tmp_path / "assets"
    with pytest.raises(HonedError, match="checksum does not match") as info:
        assets.assemble_split(parts, digest, "model", root, "fake")
    assert "\n" not in str(info.value) and "setup.sh" in str(info.value)
    assert list(root.iterdir()) == []  # no half-written model folder, no temp folder


def test_parts_out_of_order_fail_the_checksum(tmp_path: Path) -> None:
    parts, digest = _split_zip(tmp_path)
    with pytest.raises(HonedError, match="checksum"):
        assets.assemble_split(list(reversed(parts)), digest, "model", tmp_path / "assets", "fake")


def test_missing_part_package_names_it_and_how_to_rerun_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = assets.SplitZip("fake", (("honed-no-such-part-001", "x/part.001"),), "0" * 64, "model")
    monkeypatch.setitem(assets.SPLIT_ASSETS, "fake", missing)
    with pytest.raises(HonedError, match="honed-no-such-part-001 is not installed") as info:
        assets.split_parts(missing)
    assert "setup.sh" in str(info.value) and "\n" not in str(info.value)


def test_cli_assemble_errors_are_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(assets.ASSETS_ENV, str(tmp_path / "assets"))
    fake = assets.SplitZip("fake", (("honed-no-such-part-001", "p"),), "0" * 64, "m")
    monkeypatch.setitem(assets.SPLIT_ASSETS, "fake", fake)
    assert assets.main(["assemble", "fake"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "honed-no-such-part-001" in err
    assert assets.main(["assemble", "nope"]) == 2 and "not a split asset" in capsys.readouterr().err
    assert assets.main([]) == 2


def test_mpnet_name_resolves_only_when_assembled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "sentence-transformers/all-mpnet-base-v2"
    monkeypatch.setenv(assets.ASSETS_ENV, str(tmp_path / "empty"))
    assert assets.resolve_model_id(name) == name  # not assembled: the hub name, and loading says how to add it
    assert "python -m honed.assets assemble mpnet" in assets.install_hint(name)


MPNET = assets.assembled(assets.SPLIT_ASSETS["mpnet"])


@pytest.mark.mpnet
@pytest.mark.skipif(
    MPNET is None,
    reason="all-mpnet-base-v2 is not assembled; run `python -m honed.assets assemble "
    "mpnet` (scripts/setup.sh without HONED_SKIP_MPNET)",
)
def test_real_mpnet_loads_offline_and_predicts() -> None:
    import torch

    from honed.data.labels import LabelMap
    from honed.models.build import build_model
    from honed.recipe import build_recipe

    name = "sentence-transformers/all-mpnet-base-v2"
    recipe = build_recipe({"data": {"kind": "text", "train": "x.csv"}, "model": {"name": name}})
    assert assets.resolve_model_id(recipe.model.name) == str(MPNET)
    model = build_model(recipe, LabelMap.from_labels(["neg", "pos"]))
    assert type(model.hf).__name__ == "MPNetForSequenceClassification"
    batch = model.preprocess(["a wonderful film", "a dull mess"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch)
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
