"""Domain-adaptive pretraining on the techniques text task (bench/recipes/techniques-text.yaml:
MiniLM, Rotten Tomatoes fresh vs rotten split by movie, 400/160/480 rows, max_length 64, 3 epochs):
the plain MiniLM fine-tuned vs MiniLM after `honed pretrain` (whole-word masked-LM on the 400
training texts only, labels unused) fine-tuned the same way. Each step runs in a fresh process with
one torch thread; results are stored per run in bench/results/dapt/ so a re-run resumes.

    HF_HUB_OFFLINE=1 nice -n 5 .venv/bin/python bench/dapt.py --seeds 0 1 --mlm-epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RECIPE = BENCH / "recipes" / "techniques-text.yaml"
RESULTS = BENCH / "results" / "dapt"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def honed(verb: str, overrides: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).with_name("honed")), verb, str(RECIPE), *overrides, "--quiet", "--overwrite"],
        check=True,
        env=ENV,
    )
    return time.perf_counter() - started


def finetune(name: str, model: str, seed: int, scratch: Path) -> dict:
    stored = RESULTS / f"{name}-seed{seed}.json"
    if stored.is_file():
        return json.loads(stored.read_text())
    out = scratch / f"{name}-{seed}"
    wall = honed("train", [f"output_dir={out}", f"seed={seed}", f"model.name={model}", "report.enabled=false"])
    metrics = json.loads((out / "results.json").read_text())
    result = {"name": name, "seed": seed, "test_accuracy": metrics["test_accuracy"], "wall_s": round(wall, 1)}
    stored.write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--mlm-epochs", type=int, default=3)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="honed-dapt-") as tmp:
        scratch = Path(tmp)
        backbone_run = scratch / "dapt"
        mlm_wall = honed(
            "pretrain",
            [
                f"output_dir={backbone_run}",
                f"pretrain.epochs={args.mlm_epochs}",
                "pretrain.lr=5e-5",
                "pretrain.batch_size=16",
                "pretrain.whole_word=true",
            ],
        )
        summary = json.loads((backbone_run / "pretrain.json").read_text())
        print(
            f"MLM: {summary['rows']} rows x {args.mlm_epochs} epochs, "
            f"losses {summary['loss_per_epoch']}, {mlm_wall:.0f} s",
            flush=True,
        )
        (RESULTS / "mlm.json").write_text(
            json.dumps({**summary, "wall_s": round(mlm_wall, 1), "backbone": "(temporary)"}, indent=1)
        )
        for seed in args.seeds:
            for name, model in (
                ("baseline", "sentence-transformers/all-MiniLM-L6-v2"),
                ("dapt", str(backbone_run / "backbone")),
            ):
                print(json.dumps(finetune(name, model, seed, scratch)), flush=True)


if __name__ == "__main__":
    main()
