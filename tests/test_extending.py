"""The README's "Extending honed" examples work as written: a technique, a saved kind, a verb."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

import honed
from honed.cli import main
from tests.conftest import REPO, tiny_recipe


def _examples() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Extending honed") :]
    section = section[: section.index("\n## ")] if "\n## " in section else section
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def _run(code: str, name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": name}
    exec(compile(code, f"README:{name}", "exec"), namespace)  # the README's own text, nothing else
    return namespace


def test_the_section_has_the_three_examples() -> None:
    technique, kind, verb = _examples()
    assert "TECHNIQUES.register" in technique and "class PriorPredictor" in kind and "def add_parser" in verb


def test_the_technique_example_trains(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    from honed.techniques import TECHNIQUES

    if "gradient_noise" not in TECHNIQUES:
        _run(_examples()[0], "readme_gradient_noise")
    plain = honed.fit(tiny_recipe(tiny_bert, text_csv, tmp_path / "plain"), quiet=True)
    noisy = honed.fit(
        tiny_recipe(tiny_bert, text_csv, tmp_path / "noisy", techniques=[{"name": "gradient_noise", "std": 0.05}]),
        quiet=True,
    )
    a, b = plain.model.state_dict(), noisy.model.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a), "the noise changed the training"
    again = honed.fit(tiny_recipe(tiny_bert, text_csv, tmp_path / "again"), quiet=True)
    assert all(torch.equal(a[k], again.model.state_dict()[k]) for k in a), "without it training is reproducible"
    with pytest.raises(honed.HonedError, match="std must be > 0"):
        honed.fit(tiny_recipe(tiny_bert, text_csv, tmp_path / "bad", techniques=[{"name": "gradient_noise", "std": 0}]))


def test_the_saved_kind_example_predicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from honed.inference import base

    namespace = _run(_examples()[1], "readme_prior")
    table = base.Registry("saved predictor kind")  # a fresh table: the test leaves the shipped registry as it is
    for name in base.SAVED_KINDS.names():
        table.register(name)(base.SAVED_KINDS.get(name))
    table.register("prior")(namespace["PriorPredictor"])
    monkeypatch.setattr(base, "SAVED_KINDS", table)
    folder = tmp_path / "prior"
    folder.mkdir()
    recipe = {"model": {"name": "m"}, "data": {"kind": "text", "train": "x.csv"}}
    (folder / "prior.json").write_text(json.dumps({"labels": ["neg", "pos"], "freqs": [0.25, 0.75], "recipe": recipe}))
    pd.DataFrame({"text": ["good", "bad", "fine"]}).to_csv(tmp_path / "in.csv", index=False)
    assert main(["predict", str(folder), str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv")]) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    assert out["predicted"].tolist() == ["pos"] * 3 and out["prob_pos"].tolist() == [0.75] * 3
    assert main(["info", str(folder)]) == 0
    assert "PriorPredictor, task classification, 2 labels: neg, pos" in capsys.readouterr().out


def test_the_verb_example_is_the_shipped_info_verb(
    tiny_bert: str, text_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _examples()[2] == (REPO / "honed" / "cli" / "info.py").read_text(encoding="utf-8")
    run = honed.fit(tiny_recipe(tiny_bert, text_csv, tmp_path / "run"), quiet=True)
    assert main(["info", str(run.run_dir)]) == 0
    assert capsys.readouterr().out.strip() == f"{run.run_dir}: ModelPredictor, task classification, 2 labels: neg, pos"
    assert main(["info", str(tmp_path / "missing")]) == 2
