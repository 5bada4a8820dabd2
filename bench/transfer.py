"""Model size and transfer on the techniques text task (bench/recipes/techniques-text.yaml: MiniLM,
Rotten Tomatoes fresh vs rotten split by movie, 400/160/480 rows, max_length 64, 3 epochs).

Parts (each run is `honed train` in a fresh process with one torch thread; results are stored per run
in bench/results/transfer/<part>/ so an interrupted benchmark resumes):
  cache    head-only stage (frozen MiniLM, linear probe, 5 epochs) with and without
           train.cache_frozen_features: seconds per epoch and wall time, alternating, 2 repeats.
  student  a fine-tuned 6-layer teacher (seed 0), then a 3-layer student (model.keep_layers: 3, the
           teacher's pretrained layers 1, 3, 5) fine-tuned alone vs distilled from the teacher
           (T=2, alpha=0.5), 3 seeds; parameters and CPU prediction time per example.
  fusion   frozen-backbone probes on cached, mean-pooled features (lr 3e-3, 20 epochs): MiniLM alone, a
           second backbone alone (--second, e.g. a domain-pretrained MiniLM from `honed pretrain`), each as a
           one-member fusion (same pooling and head), and their two-member fusion, 3 seeds.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/transfer.py --part cache
    HF_HUB_OFFLINE=1 .venv/bin/python bench/transfer.py --part student
    HF_HUB_OFFLINE=1 .venv/bin/python bench/transfer.py --part fusion \\
        --second bench/results/transfer/_models/dapt/backbone
      (the backbone: bench/pretrain.py --backbone-only bench/results/transfer/_models/dapt)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/transfer.py --report
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RECIPE = BENCH / "recipes" / "techniques-text.yaml"
RESULTS = BENCH / "results" / "transfer"
MODELS = RESULTS / "_models"  # teacher weights: not committed (see .gitignore there)
PROBE = ["techniques=[{name: freeze, all_but_head: true}]", "optim.lr=1e-3", "train.epochs=5"]
FUSION_PROBE = [
    "optim.lr=3e-3",
    "train.epochs=20",
]  # on cached features an epoch costs ~0.1 s: train the probes to convergence
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def run(part: str, name: str, overrides: list[str], output: Path | None = None, cache_dir: str | None = None) -> dict:
    """One `honed train` in a fresh process (stored result reused if present)."""
    stored = RESULTS / part / f"{name}.json"
    if stored.is_file():
        return json.loads(stored.read_text())
    with tempfile.TemporaryDirectory(prefix="honed-transfer-") as scratch:
        out = output or Path(scratch) / "run"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        if cache_dir:
            env["HONED_CACHE_DIR"] = cache_dir
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "honed.cli",
                "train",
                str(RECIPE),
                "--quiet",
                "--overwrite",
                f"output_dir={out}",
                *overrides,
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        if done.returncode != 0:
            raise SystemExit(f"{part}/{name} failed:\n{done.stderr[-3000:]}")
        result = json.loads((out / "results.json").read_text())
    result.update(name=name, overrides=overrides, process_seconds=time.perf_counter() - started)
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_text(json.dumps(result, indent=1))
    return result


def part_cache() -> None:
    for repeat in range(2):
        for cached in (False, True):  # alternating, each with a cold feature cache
            with tempfile.TemporaryDirectory() as cold:
                r = run(
                    "cache",
                    f"{'cached' if cached else 'live'}-r{repeat}",
                    [*PROBE, f"train.cache_frozen_features={cached}"],
                    cache_dir=cold,
                )
            print(
                f"{r['name']}: {r['train_seconds'] / r['epochs_run']:.2f} s/epoch, wall {r['process_seconds']:.0f} s",
                flush=True,
            )


def part_student() -> None:
    teacher = MODELS / "teacher"
    if not (teacher / "model" / "honed.json").is_file():
        MODELS.mkdir(parents=True, exist_ok=True)
        (MODELS / ".gitignore").write_text("*\n")
        (RESULTS / "student" / "teacher-s0.json").unlink(missing_ok=True)
    run("student", "teacher-s0", ["seed=0"], output=teacher)
    for seed in range(3):
        for name, extra in (
            ("student", []),
            (
                "student-distilled",
                [f"techniques=[{{name: distill, teacher: {teacher / 'model'}, temperature: 2.0, alpha: 0.5}}]"],
            ),
        ):
            r = run("student", f"{name}-s{seed}", [f"seed={seed}", "model.keep_layers=3", *extra])
            print(f"{name} seed {seed}: test acc {r['test_accuracy']:.4f}", flush=True)
    print(size_and_speed(teacher))


def size_and_speed(teacher: Path) -> dict:
    """Parameters and CPU milliseconds per example (batch 64, one thread, 64 tokens) of the teacher
    and of its 3-layer cut (the student's architecture)."""
    import torch

    from honed.models.build import load_model
    from honed.models.shrink import keep_layers

    torch.set_num_threads(1)
    stored = RESULTS / "student" / "size.json"
    if stored.is_file():
        return json.loads(stored.read_text())
    out = {}
    for name in ("teacher", "student"):
        model, _ = load_model(teacher / "model")
        if name == "student":
            keep_layers(model, 3)
        model.eval()
        batch = {
            "input_ids": torch.randint(1000, 20000, (64, 64)),
            "attention_mask": torch.ones(64, 64, dtype=torch.long),
        }
        with torch.no_grad():
            model(**batch)
            times = []
            for _ in range(5):
                started = time.perf_counter()
                model(**batch)
                times.append((time.perf_counter() - started) / 64 * 1000)
        out[name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "ms_per_example": statistics.median(times),
        }
    stored.write_text(json.dumps(out, indent=1))
    return out


def part_fusion(second: str) -> None:
    def fusion(*names: str) -> list[str]:
        return [
            "model.name=fusion",
            f"model.fusion={{members: [{', '.join(f'{{name: {n}}}' for n in names)}]}}",
        ]

    for seed in range(3):
        for name, model in (("minilm", fusion(MINILM)), ("second", fusion(second)), ("fusion", fusion(MINILM, second))):
            r = run(
                "fusion",
                f"{name}-s{seed}",
                [f"seed={seed}", *PROBE, *FUSION_PROBE, "train.cache_frozen_features=true", *model],
            )
            print(f"{name} seed {seed}: test acc {r['test_accuracy']:.4f}", flush=True)


def _stats(part: str, prefix: str) -> tuple[float, float, int]:
    values = [json.loads(p.read_text())["test_accuracy"] for p in sorted((RESULTS / part).glob(f"{prefix}-s*.json"))]
    return (
        (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))
        if values
        else (0.0, 0.0, 0)
    )


def report() -> None:
    lines = []
    cache = {p.stem: json.loads(p.read_text()) for p in sorted((RESULTS / "cache").glob("*.json"))}
    if cache:
        lines += ["| head-only stage (5 epochs) | s/epoch | wall s |", "|---|---|---|"]
        for name, r in cache.items():
            lines.append(f"| {name} | {r['train_seconds'] / r['epochs_run']:.3f} | {r['process_seconds']:.0f} |")
        live = statistics.median(r["train_seconds"] / r["epochs_run"] for n, r in cache.items() if n.startswith("live"))
        hot = statistics.median(
            r["train_seconds"] / r["epochs_run"] for n, r in cache.items() if n.startswith("cached")
        )
        lines.append(f"\nper-epoch speed-up of the cache: {live / hot:.0f}x (medians)\n")
    for part, names in (("student", ("student", "student-distilled")), ("fusion", ("minilm", "second", "fusion"))):
        rows = [(n, *_stats(part, n)) for n in names]
        if any(r[3] for r in rows):
            lines += [f"| {part} variant | test accuracy | seeds |", "|---|---|---|"]
            lines += [f"| {n} | {m:.4f} ± {s:.4f} | {k} |" for n, m, s, k in rows if k]
            lines.append("")
    teacher = RESULTS / "student" / "teacher-s0.json"
    if teacher.is_file():
        lines.append(
            f"teacher (6 layers, seed 0): test accuracy {json.loads(teacher.read_text())['test_accuracy']:.4f}"
        )
    size = RESULTS / "student" / "size.json"
    if size.is_file():
        for name, figures in json.loads(size.read_text()).items():
            lines.append(
                f"{name}: {figures['parameters'] / 1e6:.1f} M parameters, "
                f"{figures['ms_per_example']:.2f} ms/example on CPU"
            )
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["cache", "student", "fusion"])
    parser.add_argument("--second", help="the second backbone of the fusion part (a folder)")
    parser.add_argument("--report", action="store_true", help="print the tables from the stored results")
    args = parser.parse_args()
    if args.part == "cache":
        part_cache()
    elif args.part == "student":
        part_student()
    elif args.part == "fusion":
        if not args.second:
            raise SystemExit("--part fusion needs --second BACKBONE_FOLDER")
        part_fusion(args.second)
    report()


if __name__ == "__main__":
    main()
