"""honed audit / honed clean: planted problems are found, cleaning removes them, bad input is one line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from honed.audit.base import AuditContext, AuditSettings
from honed.audit.cleaning import clean
from honed.audit.data import load_audit_data
from honed.audit.run import audit
from honed.cli import main
from honed.errors import HonedError
from honed.recipe import load_recipe
from tests.conftest import text_rows

LONG = "an endless synopsis of the plot, scene after scene, character after character. " * 30


def planted(tmp_path: Path) -> dict[str, Path]:
    """train/val/test CSVs with an exact duplicate, a test row copied into train, an empty text, a missing
    label, a very long row, a flipped label, and a movie shared by train and test."""
    rows = text_rows(60)
    train, val, test = rows.iloc[:36].copy(), rows.iloc[36:46].copy(), rows.iloc[46:].copy()
    val["movie"], test["movie"] = "v", "t"
    test.loc[test.index[0], "movie"] = "m3"  # group leak: movie m3 also in train
    train.loc[1, "text"] = train.loc[0, "text"]  # exact duplicate within train (case/space differ below)
    train.loc[1, "text"] = "  " + train.loc[0, "text"].upper()
    train.loc[1, "label"] = train.loc[0, "label"]
    train.loc[2, "text"] = test.iloc[3]["text"]  # leak: a test row copied into train
    train.loc[2, "label"] = test.iloc[3]["label"]
    train.loc[4, "text"] = ""  # empty text
    train.loc[6, "label"] = None  # missing label
    train.loc[8, "text"] = LONG  # length outlier
    train.loc[10, "label"] = "neg" if train.loc[10, "label"] == "pos" else "pos"  # flipped label
    paths = {name: tmp_path / f"{name}.csv" for name in ("train", "val", "test")}
    for name, frame in zip(paths, (train, val, test)):
        frame.to_csv(paths[name], index=False)
    return paths


def oof_file(tmp_path: Path, train: Path, flipped: int, cv_layout: bool = False) -> Path:
    """Confident, correct out-of-fold probabilities for every train row except the flipped one;
    `cv_layout` writes them as `honed cv` does (row, label, p_<class>)."""
    frame = pd.read_csv(train)
    pos = np.where(frame["label"] == "pos", 0.95, 0.05)
    pos[flipped] = 1.0 - pos[flipped]
    path = tmp_path / "oof.csv"
    if cv_layout:
        table = pd.DataFrame({"row": range(len(frame)), "label": frame["label"], "p_neg": 1 - pos, "p_pos": pos})
    else:
        table = pd.DataFrame({"id": range(len(frame)), "neg": 1 - pos, "pos": pos})
    table.to_csv(path, index=False)
    return path


def recipe_for(tiny_bert: str, paths: dict[str, Path], out: Path, **data: object) -> dict:
    return {
        "name": "audit",
        "seed": 0,
        "output_dir": str(out),
        "data": {
            "kind": "text",
            "train": str(paths["train"]),
            "val": str(paths.get("val")) if "val" in paths else None,
            "test": str(paths.get("test")) if "test" in paths else None,
            "group_column": "movie",
            "max_length": 16,
            **data,
        },
        "model": {"name": tiny_bert},
    }


def flagged(result, name: str) -> pd.DataFrame:
    rows = result.finding(name).rows
    return rows if rows is not None else pd.DataFrame(columns=["source", "row", "reason"])


def test_audit_finds_planted_problems(tiny_bert: str, tmp_path: Path) -> None:
    paths = planted(tmp_path)
    oof = oof_file(tmp_path, paths["train"], flipped=10, cv_layout=True)
    recipe = recipe_for(tiny_bert, paths, tmp_path / "run")
    result = audit(recipe, quiet=True, near_duplicate=0.999, oof=str(oof))
    corrupt = flagged(result, "corrupt")
    assert set(zip(corrupt["row"], corrupt["reason"])) == {(4, "missing text"), (6, "missing label")}
    dups = flagged(result, "duplicates")
    assert ((dups["row"] == 1) & (dups["reason"] == "exact duplicate") & (dups["source"] == "train")).any()
    leaks = flagged(result, "leakage")
    assert ((leaks["row"] == 2) & (leaks["reason"] == "leak: exact duplicate")).sum() == 1
    assert result.finding("leakage").data["leaked_groups"] == 1
    assert set(leaks.loc[leaks["reason"] == "leak: group", "row"]) == {3, 13, 23, 33}  # movie m3's train rows
    outliers = flagged(result, "outliers")
    assert set(outliers.loc[outliers["reason"] == "length outlier", "row"]) == {8}
    issues = flagged(result, "label_issues")
    assert list(issues["row"]) == [10] and issues["suggested"].iloc[0] != issues["label"].iloc[0]
    assert result.finding("learning_curve").data["train_rows"][-1] == 34  # 36 train rows less the two unusable ones
    page = (tmp_path / "run-audit" / "audit.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in page and "http://" not in page and "https://" not in page
    report = json.loads((tmp_path / "run-audit" / "audit.json").read_text(encoding="utf-8"))
    assert [f["name"] for f in report["findings"]][:2] == ["corrupt", "balance"]
    with pytest.raises(HonedError, match="already exists; pass --overwrite"):
        audit(recipe, quiet=True, near_duplicate=0.999, oof=str(oof))


def test_clean_writes_copy_and_manifest(tiny_bert: str, tmp_path: Path) -> None:
    paths = planted(tmp_path)
    oof = oof_file(tmp_path, paths["train"], flipped=10)
    before = hashlib.sha1(paths["train"].read_bytes()).hexdigest()
    recipe = recipe_for(tiny_bert, paths, tmp_path / "run")
    result = clean(recipe, output=tmp_path / "clean", quiet=True, near_duplicate=0.999, oof=str(oof), labels="relabel")
    assert hashlib.sha1(paths["train"].read_bytes()).hexdigest() == before  # input untouched
    manifest = pd.read_csv(tmp_path / "clean" / "manifest.csv")
    reasons = dict(zip(manifest["row"], manifest["reason"]))
    assert reasons == {
        1: "exact duplicate",
        2: "leak: exact duplicate",
        4: "missing text",
        6: "missing label",
        10: "likely label error",
    }
    assert manifest.loc[manifest["row"] == 10, "action"].item() == "relabelled"
    cleaned = pd.read_csv(tmp_path / "clean" / "train.csv")
    original = pd.read_csv(paths["train"])
    assert len(cleaned) == len(original) - 4 and list(cleaned.columns) == list(original.columns)
    assert cleaned.loc[cleaned["text"] == original.loc[10, "text"], "label"].item() != original.loc[10, "label"]
    from honed.data.build import load_tables

    tables = load_tables(load_recipe(recipe, {"data.train": str(result.files["train"])}))  # usable as data.train
    assert len(tables.frames["train"]) == len(cleaned)
    with pytest.raises(HonedError, match="already exists"):
        clean(recipe, output=tmp_path / "clean", quiet=True, near_duplicate=0.999, oof=str(oof))
    with pytest.raises(HonedError, match="is an input file of this recipe"):  # --output next to train.csv + --overwrite
        clean(recipe, output=tmp_path, overwrite=True, quiet=True, near_duplicate=0.999, oof=str(oof))
    assert hashlib.sha1(paths["train"].read_bytes()).hexdigest() == before
    dropped = clean(
        recipe,
        output=tmp_path / "clean2",
        quiet=True,
        near_duplicate=0.999,
        oof=str(oof),
        drop_outliers=True,
        drop_group_leaks=True,
    )
    reasons = set(dropped.manifest["reason"])
    assert {"length outlier", "leak: group", "likely label error"} <= reasons
    assert (dropped.manifest["action"] == "dropped").all()


def synthetic_context(tmp_path: Path, tiny_bert: str) -> tuple[AuditContext, np.ndarray]:
    """Two well-separated clusters as embeddings: one flipped label, one far-off row, one near pair."""
    rng = np.random.default_rng(0)
    rows = text_rows(80)
    path = tmp_path / "train.csv"
    rows.to_csv(path, index=False)
    recipe = load_recipe(
        {"data": {"train": str(path), "split": {"val": 0.0, "test": 0.25}}, "model": {"name": tiny_bert}}
    )
    data = load_audit_data(recipe)
    index = data.frame.index
    centres = {"pos": np.eye(16)[0], "neg": np.eye(16)[1]}
    vectors = np.stack([centres[lab] * 4 + rng.normal(0, 0.6, 16) for lab in data.frame["label"]])
    vectors[5] = -4 * np.eye(16)[2] + rng.normal(0, 0.1, 16)  # unlike every class
    flip = int(np.flatnonzero(data.frame["split"] == "train")[3])
    data.frame.loc[flip, "label"] = "neg" if data.frame.loc[flip, "label"] == "pos" else "pos"
    vectors[7] = vectors[9] + 1e-3  # a near duplicate pair (different texts)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ctx = AuditContext(recipe, data, AuditSettings(near_duplicate=0.999), quiet=True)
    ctx.cache["embeddings"] = (index, vectors.astype(np.float32))
    return ctx, np.array([flip])


def test_probe_outliers_near_duplicates_and_curve_on_embeddings(tiny_bert: str, tmp_path: Path) -> None:
    from honed.audit.base import CHECKS

    ctx, flip = synthetic_context(tmp_path, tiny_bert)
    findings = {
        name: CHECKS.get(name)(ctx)
        for name in ("corrupt", "duplicates", "leakage", "outliers", "label_issues", "learning_curve")
    }
    issues = findings["label_issues"].rows
    assert flip[0] in set(issues.index) and "logistic regression" in findings["label_issues"].data["source"]
    unlike = findings["outliers"].rows
    assert 5 in set(unlike.index[unlike["reason"].isin(["unlike its class", "unlike the data"])])
    pairs = ctx.cache["near_pairs"]
    assert {(7, 9)} <= set(zip(pairs["a"], pairs["b"])) or {(9, 7)} <= set(zip(pairs["a"], pairs["b"]))
    assert len(pairs) == 1
    curve = findings["learning_curve"].data
    assert len(curve["accuracy"]) == 4 and curve["accuracy"][-1] > 0.9


def test_embeddings_are_cached_on_disk(tiny_bert: str) -> None:
    from honed.audit import embeddings

    recipe = load_recipe({"data": {"max_length": 16}, "model": {"name": tiny_bert}})
    texts = ["a film", "another film", "a third"]
    first = embeddings.embed(recipe, texts, None, quiet=True)
    path = embeddings._cache_path(recipe, texts, None)
    assert path.is_file() and first.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(embeddings.embed(recipe, texts, None, quiet=True), first)


def image_folder(root: Path, corrupt: int = 1, good: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for k, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(good):
            pixels = (rng.random((20, 20, 3)) * 60 + 150 * k).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    for i in range(corrupt):
        (root / "cat" / f"broken{i}.png").write_bytes(b"not an image at all")
    return root


def image_recipe(root: Path, out: Path) -> dict:
    return {
        "name": "img",
        "seed": 0,
        "output_dir": str(out),
        "data": {"kind": "image", "train": str(root), "image_size": 32, "split": {"val": 0.0, "test": 0.0}},
        "model": {"name": "mobilenet_v2", "source": "torchvision"},
    }


def test_image_folder_with_a_corrupt_file(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "images")
    recipe = image_recipe(root, tmp_path / "run")
    result = audit(recipe, quiet=True, checks=("corrupt", "balance", "duplicates", "outliers"))
    bad = result.finding("corrupt").rows
    assert list(bad["reason"]) == ["unreadable or corrupt image"] and bad["preview"].iloc[0].endswith("broken0.png")
    cleaned = clean(recipe, output=tmp_path / "clean", quiet=True, labels="keep")
    kept = pd.read_csv(cleaned.files["train"])
    assert list(kept.columns) == ["path", "label"] and len(kept) == 8 and not kept["path"].str.contains("broken").any()
    from honed.data.build import load_tables

    overrides = dict(o.split("=", 1) for o in cleaned.overrides())
    tables = load_tables(load_recipe(recipe, overrides))  # the manifest trains: every image decodes
    assert len(tables.frames["train"]) == 8


def test_bad_inputs_are_one_line_errors(tiny_bert: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n", encoding="utf-8")
    one = tmp_path / "one.csv"
    pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", "x", "x"]}).to_csv(one, index=False)
    notext = tmp_path / "notext.csv"
    pd.DataFrame({"review": ["a", "b"], "label": ["x", "y"]}).to_csv(notext, index=False)
    cases = {empty: "holds no rows", one: "only one class", notext: "no column 'text'"}
    for path, message in cases.items():
        with pytest.raises(HonedError, match=message):
            audit({"data": {"train": str(path)}, "model": {"name": tiny_bert}}, write=False, quiet=True)
    root = image_folder(tmp_path / "broken", corrupt=3, good=0)
    (root / "dog" / "x.png").write_bytes(b"junk")
    with pytest.raises(HonedError, match="all 4 rows are unusable"):
        audit(image_recipe(root, tmp_path / "r"), write=False, quiet=True)
    oof = tmp_path / "bad-oof.csv"
    pd.DataFrame({"id": [0], "pos": [1.0]}).to_csv(oof, index=False)
    paths = {"train": tmp_path / "t.csv"}
    text_rows(20).to_csv(paths["train"], index=False)
    with pytest.raises(HonedError, match="no column for class 'neg'"):
        audit(
            recipe_for(tiny_bert, paths, tmp_path / "o"),
            write=False,
            quiet=True,
            oof=str(oof),
            checks=("label_issues",),
        )


def test_cli_audit_and_clean(tiny_bert: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    paths = planted(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(recipe_for(tiny_bert, paths, tmp_path / "run")), encoding="utf-8")
    args = ["audit", str(recipe), "--quiet", "--near-duplicate", "0.999", "--checks", "corrupt,balance,duplicates"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 exact duplicate rows" in out and "recommendations:" in out
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert (
        main(
            [
                "clean",
                str(recipe),
                "--quiet",
                "--near-duplicate",
                "0.999",
                "--labels",
                "keep",
                "-o",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "dropped: 1 exact duplicate" in out and f"data.train={tmp_path / 'c' / 'train.csv'}" in out
    with pytest.raises(SystemExit):
        main(["clean", str(recipe), "--labels", "maybe"])


def test_clean_never_judges_val_or_test_rows_carved_from_the_training_file(tiny_bert: str, tmp_path: Path) -> None:
    """Label errors and outliers are acted on in the training split only; carved val/test rows stay as they are."""
    paths = planted(tmp_path)
    recipe = recipe_for(tiny_bert, {"train": paths["train"]}, tmp_path / "run", split={"val": 0.2, "test": 0.2})
    frame = audit(recipe, quiet=True, write=False, checks=("corrupt",)).context.data.frame
    usable = frame[frame["label"].notna() & (frame["x"].astype(str).str.strip() != "")]
    held = int(usable.loc[usable["split"] == "test", "row"].iloc[0])
    kept = int(usable.loc[usable["split"] == "train", "row"].iloc[-1])
    oof = oof_file(tmp_path, paths["train"], flipped=held)
    table = pd.read_csv(oof)
    table.loc[kept, ["neg", "pos"]] = table.loc[kept, ["pos", "neg"]].to_numpy()  # and one training row
    table.to_csv(oof, index=False)
    result = clean(recipe, output=tmp_path / "clean", quiet=True, oof=str(oof), checks=("corrupt", "label_issues"))
    judged = set(result.manifest.loc[result.manifest["reason"] == "likely label error", "row"])
    assert kept in judged and held not in judged


def test_tiny_or_lopsided_data_is_reported_not_crashed(tiny_bert: str, tmp_path: Path) -> None:
    """Eight rows, nothing held out, one class with a single usable row: the probe-based checks say why
    they did not run."""
    from honed.audit.base import CHECKS

    rows = text_rows(8)
    rows.loc[rows["label"] == "neg", "label"] = ["neg"] + ["pos"] * (int((rows["label"] == "neg").sum()) - 1)
    path = tmp_path / "train.csv"
    rows.to_csv(path, index=False)
    recipe = load_recipe(
        {"data": {"train": str(path), "split": {"val": 0.0, "test": 0.0}}, "model": {"name": tiny_bert}}
    )
    data = load_audit_data(recipe)
    ctx = AuditContext(recipe, data, AuditSettings(), quiet=True)
    ctx.cache["embeddings"] = (
        data.frame.index,
        np.random.default_rng(0).normal(size=(len(data.frame), 8)).astype(np.float32),
    )
    curve, labels = CHECKS.get("learning_curve")(ctx), CHECKS.get("label_issues")(ctx)
    assert curve.summary[0].startswith("not measured") and labels.summary[0].startswith("not checked")
