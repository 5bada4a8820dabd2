"""Length-grouped batches: every row once, less padding, a pure function of (seed, epoch), exact on
resume and under DDP, unchanged gradient-accumulation windows; eval sorted by length returns rows
in input order; `data.group_by_length: false` is the plain shuffle."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

import honed
from honed.data.build import load_tables
from honed.data.length_grouping import LengthSortedSampler, epoch_permutation, grouped_batches, padded_tokens
from honed.data.loaders import EpochSampler, eval_loader, train_loader
from honed.data.text import PadCollator, TextDataset, tokenize
from tests.conftest import NEGATIVE, POSITIVE, REPO, tiny_recipe


class BatchLog:
    """A test technique: each batch's row indices, per epoch, written per process at fit end."""

    def __init__(self, folder: str | None = None) -> None:
        self.folder, self.epochs = folder, {}
        self.rank = 0

    def on_batch_start(self, state: Any) -> None:
        self.rank = state.accelerator.process_index
        self.epochs.setdefault(state.epoch, []).append(state.batch_index.tolist())

    def on_fit_end(self, state: Any) -> None:
        if self.folder:
            Path(self.folder, f"batches-{self.rank}.json").write_text(json.dumps(self.epochs))


def varied_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """n labelled reviews of 1 to 12 repeated phrases: token counts from about 4 to the max_length."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = " ".join(rng.choice(POSITIVE if label == "pos" else NEGATIVE) for _ in range(rng.randint(1, 12)))
        rows.append({"text": f"{words} #{i}", "label": label})
    return pd.DataFrame(rows)


def _lengths(seed: int = 0, n: int = 300) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(3, 64) for _ in range(n)]


@pytest.mark.parametrize(
    ("size", "batch", "keep", "window"),
    [(300, 8, None, 1), (301, 32, None, 1), (97, 8, 96, 4), (33, 8, None, 2), (5, 8, None, 1), (0, 4, None, 1)],
)
def test_every_kept_row_once_and_only_the_last_batch_short(
    size: int, batch: int, keep: int | None, window: int
) -> None:
    lengths = _lengths(n=size)
    for epoch in (0, 1):
        batches = grouped_batches(lengths, batch, seed=3, epoch=epoch, keep=keep, window=window)
        kept = epoch_permutation(size, 3, epoch, size if keep is None else keep)
        assert sorted(i for b in batches for i in b) == sorted(kept)
        assert len(batches) == -(-len(kept) // batch), "as many batches as a plain sampler: steps and windows unchanged"
        assert all(len(b) == batch for b in batches[:-1])


def test_batches_are_length_sorted_and_pad_less_than_random(tiny_bert: str) -> None:
    from transformers import AutoTokenizer

    frame = varied_rows(400)
    ids = tokenize(AutoTokenizer.from_pretrained(tiny_bert), frame["text"].tolist(), None, 64)
    lengths = TextDataset(ids, [0] * len(frame)).lengths()
    assert lengths == [len(row) for row in ids["input_ids"]]
    sampler = EpochSampler(len(lengths), seed=0)
    order = list(sampler)
    random_batches = [order[i : i + 16] for i in range(0, len(order), 16)]
    grouped = grouped_batches(lengths, 16, seed=0, epoch=0)
    # each batch spans little of the length range: sorted within its mega-batch
    assert sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in grouped) < 0.3 * sum(
        max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in random_batches
    )
    assert padded_tokens(grouped, lengths) < 0.8 * padded_tokens(random_batches, lengths)
    assert max(lengths[i] for i in grouped[0]) == max(lengths), "the longest batch first: a memory error shows at once"


def test_order_is_a_function_of_seed_and_epoch() -> None:
    lengths = _lengths()
    assert grouped_batches(lengths, 8, 1, 0) == grouped_batches(lengths, 8, 1, 0)
    assert grouped_batches(lengths, 8, 1, 0) != grouped_batches(lengths, 8, 1, 1)
    assert grouped_batches(lengths, 8, 1, 0) != grouped_batches(lengths, 8, 2, 0)
    _, sampler = train_loader(
        TextDataset({"input_ids": [[1] * n for n in lengths]}, [0] * len(lengths)), 8, 1, None, 0, group_by_length=True
    )
    sampler.set_epoch(1)
    assert list(sampler) == grouped_batches(lengths, 8, 1, 1)


def test_accumulation_windows_group_like_one_big_batch() -> None:
    """4 accumulated batches of 8 hold the rows one batch of 32 would, so they make the same update."""
    lengths = _lengths(n=203)
    big = grouped_batches(lengths, 32, 5, 0)
    small = grouped_batches(lengths, 8, 5, 0, window=4)
    windows = [sum(small[i : i + 4], []) for i in range(0, len(small), 4)]
    assert windows == big


def test_switch_off_trains_on_the_plain_shuffle_and_on_groups(tiny_bert: str, tmp_path: Path) -> None:
    """The fit's batches: EpochSampler's with group_by_length off (today's behaviour), grouped_batches' with it on."""
    from transformers import AutoTokenizer

    varied_rows(60).to_csv(tmp_path / "train.csv", index=False)
    seen = {}
    for grouped in (False, True):
        recipe = tiny_recipe(tiny_bert, tmp_path / "train.csv", tmp_path / f"run-{grouped}", train__epochs=2)
        recipe["data"].update(max_length=64, group_by_length=grouped)
        log = BatchLog()
        honed.fit(recipe, callbacks=[log], quiet=True)
        seen[grouped] = log.epochs
    frame = load_tables(honed.recipe.load_recipe(recipe)).frames["train"]
    ids = tokenize(AutoTokenizer.from_pretrained(tiny_bert), frame["x"].tolist(), None, 64)["input_ids"]
    lengths = [len(r) for r in ids]
    for epoch in (0, 1):
        sampler = EpochSampler(len(frame), seed=0)
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert seen[False][epoch] == [order[i : i + 8] for i in range(0, len(order), 8)]
        assert seen[True][epoch] == grouped_batches(lengths, 8, 0, epoch)


def _train(recipe_path: Path, *extra: str, ddp: bool = False) -> subprocess.CompletedProcess:
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29543"] if ddp else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *launcher, "-m", "honed.cli", "train", str(recipe_path), "--quiet", *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_resume_mid_epoch_equals_uninterrupted(tiny_bert: str, tmp_path: Path) -> None:
    """48 training rows in batches of 4 = 12 steps per epoch; killed at step 21 (epoch 2, checkpoint at
    step 20, 8 batches in): the resumed run takes epoch 2's grouped order, skips the same 8 batches
    and ends with the same weights and metrics."""
    varied_rows(80).to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "done").touch()
    finals, results = {}, {}
    for name, marker in (("straight", tmp_path / "done"), ("killed", tmp_path / "kill")):
        recipe = tiny_recipe(
            tiny_bert, tmp_path / "train.csv", tmp_path / name, train__batch_size=4, train__checkpoint_every_steps=4
        )
        recipe["data"]["max_length"] = 64
        recipe["techniques"] = [{"name": "tests.killer:KillAtStep", "step": 21, "marker": str(marker)}]
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        first = _train(path)
        if name == "killed":
            assert first.returncode == -9, first.stderr[-2000:]
            progress = torch.load(tmp_path / name / "checkpoints/last.pt", weights_only=True)["progress"]
            assert (progress["epoch"], progress["batch_in_epoch"]) == (1, 8), "resumed mid-epoch, in epoch 2"
            first = _train(path, "--resume")
        assert first.returncode == 0, first.stderr[-2000:]
        finals[name] = torch.load(tmp_path / name / "checkpoints/last.pt", weights_only=True)["model"]
        results[name] = json.loads((tmp_path / name / "results.json").read_text())
    for key, value in finals["straight"].items():
        assert torch.equal(value, finals["killed"][key]), key
    for key in ("val_loss", "val_accuracy", "test_loss", "test_accuracy", "steps"):
        assert results["straight"][key] == results["killed"][key], key


def test_two_processes_get_as_many_batches_and_every_row(tiny_bert: str, tmp_path: Path) -> None:
    """70 rows in batches of 8 = 9 grouped batches: accelerate pads to 10, 5 per process; val of 25
    rows sorted by length is gathered to every row once (equal to a one-process evaluation)."""
    from honed.evaluate.saved import evaluate_saved

    varied_rows(70, seed=1).to_csv(tmp_path / "train.csv", index=False)
    varied_rows(25, seed=2).to_csv(tmp_path / "val.csv", index=False)
    recipe = tiny_recipe(tiny_bert, tmp_path / "train.csv", tmp_path / "run", train__epochs=2)
    recipe["data"].update(val=str(tmp_path / "val.csv"), split={"val": 0.0, "test": 0.0}, max_length=64)
    recipe["techniques"] = [{"name": "tests.test_length_grouping:BatchLog", "folder": str(tmp_path)}]
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = _train(path, "train.cpu=true", ddp=True)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "results.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 2 * 5
    logs = [json.loads((tmp_path / f"batches-{rank}.json").read_text()) for rank in (0, 1)]
    for epoch in ("0", "1"):
        assert len(logs[0][epoch]) == len(logs[1][epoch]) == 5
        rows = [i for log in logs for batch in log[epoch] for i in batch]
        assert sorted(set(rows)) == list(range(70)), "every row trains in the epoch"
    single = evaluate_saved(tmp_path / "run" / "model", str(tmp_path / "val.csv"))
    assert single["accuracy"] == metrics["val_accuracy"]
    assert abs(single["loss"] - metrics["val_loss"]) < 1e-5


def test_eval_sorted_by_length_returns_rows_in_input_order(tiny_bert: str) -> None:
    from accelerate import Accelerator

    from honed.data.labels import LabelMap
    from honed.inference.logits import logits_for
    from honed.models.build import build_model
    from honed.models.forward import predict_logits
    from honed.recipe import load_recipe

    frame = varied_rows(45).rename(columns={"text": "x", "label": "label"})
    recipes = {
        on: load_recipe(
            {
                "data": {"max_length": 64, "group_by_length": on},
                "model": {"name": tiny_bert},
                "train": {"eval_batch_size": 8},
            }
        )
        for on in (True, False)
    }
    labels = LabelMap(("neg", "pos"))
    torch.manual_seed(0)
    model = build_model(recipes[True], labels).eval()
    grouped, plain = (logits_for(model, labels, recipes[on], frame) for on in (True, False))
    assert torch.allclose(grouped, plain, atol=1e-5)
    dataset = TextDataset(tokenize(model.preprocess, frame["x"].tolist(), None, 64), labels.encode(frame["label"]))
    collate, acc = PadCollator(model.preprocess.pad_token_id), Accelerator(cpu=True)
    loader = eval_loader(dataset, 8, collate, 0, sort_by_length=True)
    assert isinstance(loader.sampler, LengthSortedSampler)
    assert [len(dataset[i]["input_ids"]) for i in loader.sampler] == sorted(dataset.lengths(), reverse=True)
    logits, ys = predict_logits(model, acc.prepare(loader), acc)
    assert ys.tolist() == labels.encode(frame["label"]), "labels come back in row order with their logits"
    assert torch.allclose(logits, plain, atol=1e-5)
    assert not isinstance(eval_loader(dataset, 8, collate, 0).sampler, LengthSortedSampler), "off: row order"
