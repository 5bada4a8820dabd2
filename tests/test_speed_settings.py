"""Speed settings: train.compile (with its fallback), train.channels_last, torch threads, pinned memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
import yaml

import honed
from honed.data import loaders
from honed.train import speed
from tests.conftest import tiny_recipe
from tests.test_images import write_images

COMPILED = "train.compile: model compiled with torch.compile"
FALLBACK = "train.compile: torch.compile failed on this platform"


def test_compile_on_completes_and_says_which(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    recipe = tiny_recipe(tiny_bert, text_csv, tmp_path / "run")
    recipe["train"].update(epochs=1, max_steps=2, compile=True)
    run = honed.fit(recipe, quiet=True)
    log = (run.run_dir / "log.txt").read_text(encoding="utf-8")
    assert COMPILED in log or FALLBACK in log
    assert run.metrics["steps"] == 2 and (run.model_dir / "honed.json").is_file()


def test_compile_failure_is_one_line_and_training_goes_on(tiny_bert: str, text_csv: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: torch.nn.Module, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("no C++ compiler found\nsecond line of a long backend error")

    monkeypatch.setattr(torch.nn.Module, "compile", broken)
    recipe = tiny_recipe(tiny_bert, text_csv, tmp_path / "run")
    recipe["train"].update(epochs=1, compile=True)
    run = honed.fit(recipe, quiet=True)
    log = (run.run_dir / "log.txt").read_text(encoding="utf-8")
    line = next(x for x in log.splitlines() if FALLBACK in x)
    assert "RuntimeError: no C++ compiler found" in line and "training uncompiled" in line
    assert "Traceback" not in log and "second line" not in log
    assert run.metrics["steps"] > 0


class _Layout:
    """Records whether the model's convolution weights are channels-last when training starts."""

    def __init__(self) -> None:
        self.channels_last: bool | None = None

    def on_fit_start(self, state: Any) -> None:
        conv = next(m for m in state.model.modules() if isinstance(m, torch.nn.Conv2d))
        self.channels_last = conv.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("setting, expected", [(True, True), ("auto", True), (False, False)])
def test_channels_last_picks_the_memory_format(setting: object, expected: bool, tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), weights)
    write_images(tmp_path / "images")
    recipe = {
        "seed": 0, "output_dir": str(tmp_path / "run"),
        "data": {"kind": "image", "train": str(tmp_path / "images"), "image_size": 32,
                 "split": {"val": 0.17, "test": 0.17}},
        "model": {"name": "mobilenet_v3_small", "source": "torchvision", "weights": str(weights)},
        "train": {"epochs": 1, "batch_size": 4, "eval_batch_size": 8, "channels_last": setting},
    }
    layout = _Layout()
    run = honed.fit(yaml.safe_load(yaml.safe_dump(recipe)), callbacks=[layout], quiet=True)  # auto: on, on CPU too
    assert layout.channels_last is expected
    assert (run.model_dir / "model.safetensors").is_file()  # saved contiguous again


def test_channels_last_auto_is_for_cnns_on_cuda_and_cpu() -> None:
    cnn, mlp = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), torch.nn.Linear(3, 4)
    assert speed.wants_channels_last("auto", cnn, torch.device("cuda"))
    assert speed.wants_channels_last("auto", cnn, torch.device("cpu"))
    assert not speed.wants_channels_last("auto", cnn, torch.device("mps"))
    assert not speed.wants_channels_last("auto", mlp, torch.device("cuda"))
    assert not speed.wants_channels_last(True, mlp, torch.device("cpu"))


@pytest.fixture
def thread_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    monkeypatch.setattr(speed, "machine_cores", lambda: 7)
    return calls


def test_threads_follow_the_cores_when_nobody_chose(thread_calls: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(speed, "_TORCH_DEFAULT_THREADS", torch.get_num_threads())
    assert speed.set_threads() == 7 and thread_calls == [7]


def test_threads_respect_omp_num_threads(thread_calls: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(speed, "_TORCH_DEFAULT_THREADS", torch.get_num_threads())
    assert speed.set_threads() is None and thread_calls == []


def test_threads_respect_an_earlier_set_num_threads(thread_calls: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(speed, "_TORCH_DEFAULT_THREADS", torch.get_num_threads() + 1)  # the user changed it
    assert speed.set_threads() is None and thread_calls == []


@pytest.mark.parametrize("cuda", [True, False])
def test_pin_memory_only_on_cuda(cuda: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    data = [{"x": torch.zeros(2)} for _ in range(4)]
    train, _ = loaders.train_loader(data, 2, 0, None, 0)
    assert train.pin_memory is cuda
    assert loaders.eval_loader(data, 2, None, 0).pin_memory is cuda
