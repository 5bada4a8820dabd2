"""Where honed's training loop spends the time the hand-written PyTorch loop does not (issue 13: "find where
the time goes with a profiler — events, progress refresh, accelerate wrappers, loss syncs").

Both loops of bench/throughput.py (honed.fit with `data.group_by_length: false`, and the hand-written loop:
same model, data, batch size, AdamW, clipping and schedule) run one epoch over the same reviews, each in a
fresh process, alternating, under cProfile switched on between the warm-up step and the last step only (so
model loading, tokenising and evaluation are left out). The self time (tottime) of every profiled Python
function is summed by where it lives — honed, accelerate, transformers, torch's Python layer, the progress
bar, the rest — and divided by the timed steps; the C++ kernels are the same in both loops and show in the
torch line. cProfile inflates Python-heavy code, so the table tells where the overhead is, not its exact size.

    nice -n 5 env HF_HUB_OFFLINE=1 .venv/bin/python bench/loop_profile.py --rounds 2 --threads 1
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import throughput  # noqa: E402  (bench/throughput.py: the two loops and their clock)

HonedClock = throughput.HonedClock  # honed's recipe names it as `__main__:HonedClock`

PLACES = (  # first match wins: a path fragment and the name it is summed under
    ("/honed/", "honed"), ("/accelerate/", "accelerate"), ("/transformers/", "transformers"),
    ("/rich/", "progress bar (rich)"), ("/tqdm/", "progress bar (tqdm)"), ("/torch/", "torch (Python layer)"),
)
BUILT_IN = "C functions (torch ops, backward, built-ins)"  # cProfile files these under '~'

OUT = Path(__file__).resolve().parent / "results" / "loop_profile"
CONTENDERS = {"honed-plain": lambda a, t, y, o: throughput.run_honed(a, t, y, o, grouped=False),
              "hand": throughput.run_hand}


class ProfiledClock(throughput.Clock):
    """bench/throughput.py's clock that also switches the profiler on at the warm-up step, off at the last."""

    def __init__(self, warmup: int, total: int, profiler: cProfile.Profile) -> None:
        super().__init__(warmup, total, cuda=False)
        self.profiler = profiler

    def tick(self, step: int, samples_seen: int) -> None:
        if step == self.total:
            self.profiler.disable()
        super().tick(step, samples_seen)
        if step == self.warmup:
            self.profiler.enable()


def place(filename: str) -> str:
    if filename == "~":
        return BUILT_IN
    return next((name for fragment, name in PLACES if fragment in filename), "other Python")


def child(args: argparse.Namespace) -> None:
    """One contender under the profiler; prints one JSON line: seconds per step by place, and the top functions."""
    import torch

    torch.set_num_threads(args.threads)
    texts, labels = throughput.load_reviews(args.samples)
    profiler = cProfile.Profile()
    steps = -(-args.samples // args.batch_size)
    throughput.CLOCK = ProfiledClock(args.warmup, steps, profiler)
    with tempfile.TemporaryDirectory(prefix="honed-profile-") as out:
        os.environ["HONED_CACHE_DIR"] = out
        CONTENDERS[args.contender](args, texts, labels, out)
    timed = steps - args.warmup
    (t0, _), (t1, _) = throughput.CLOCK.marks[args.warmup], throughput.CLOCK.marks[steps]
    stats = pstats.Stats(profiler)
    by_place: dict[str, float] = {}
    top: list[tuple[float, str]] = []
    for (filename, line, name), (_, _, tottime, cumtime, _) in stats.stats.items():
        where = place(filename)
        by_place[where] = by_place.get(where, 0.0) + tottime / timed
        if where != BUILT_IN:
            short = filename.split("/site-packages/")[-1].split("/main/")[-1]
            top.append((tottime / timed, f"{short}:{line} {name} (cumulative {cumtime / timed * 1000:.1f} ms/step)"))
    kernels = sorted(((tottime / timed, name) for (filename, _, name), (_, _, tottime, _, _) in stats.stats.items()
                      if filename == "~"), reverse=True)[:8]
    torch_python = sorted(((t / timed, f"{f.split('site-packages/')[-1]}:{n}") for (f, _, n), (_, _, t, _, _)
                           in stats.stats.items() if place(f) == "torch (Python layer)"), reverse=True)[:8]
    tokens = sum(throughput.CLOCK.tokens[args.warmup:steps]) / timed  # padded input_ids elements per timed step
    print(json.dumps({"contender": args.contender, "wall_per_step": (t1 - t0) / timed, "by_place": by_place,
                      "tokens_per_step": tokens, "top": sorted(top, reverse=True)[:12], "kernels": kernels,
                      "torch_python": torch_python}))


def parent(args: argparse.Namespace) -> None:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONTENDERS}
    for _ in range(args.rounds):
        for name in CONTENDERS:
            command = [sys.executable, __file__, "--contender", name, "--threads", str(args.threads),
                       "--samples", str(args.samples), "--warmup", str(args.warmup)]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}  # honed.fit keeps a count OMP_NUM_THREADS set
            done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    places = sorted({p for rs in runs.values() for r in rs for p in r["by_place"]})
    print(f"| where (self time, ms per timed step, median of {args.rounds} rounds) | {' | '.join(runs)} |")
    print("|---|" + "---:|" * len(runs))
    for where in places:
        cells = [statistics.median(r["by_place"].get(where, 0.0) for r in rs) * 1000 for rs in runs.values()]
        print(f"| {where} | {' | '.join(f'{c:.1f}' for c in cells)} |")
    walls = [statistics.median(r["wall_per_step"] for r in rs) * 1000 for rs in runs.values()]
    print(f"| wall time per step, profiled | {' | '.join(f'{w:.1f}' for w in walls)} |")
    tokens = [statistics.median(r["tokens_per_step"] for r in rs) for rs in runs.values()]
    print(f"| padded tokens per step | {' | '.join(f'{t:.0f}' for t in tokens)} |")
    per_k = [statistics.median(r["wall_per_step"] * 1e6 / r["tokens_per_step"] for r in rs) for rs in runs.values()]
    print(f"| wall ms per 1,000 padded tokens | {' | '.join(f'{w:.1f}' for w in per_k)} |")
    for name, rs in runs.items():
        for key, title in (("kernels", "C functions"), ("torch_python", "torch Python functions")):
            print(f"\n{name}'s largest {title} by self time (last round):")
            for seconds, what in rs[-1][key]:
                print(f"  {seconds * 1000:7.1f} ms/step  {what}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "runs.json").write_text(json.dumps(runs, indent=1))  # every round, for a second look
    print("\nhoned-plain's Python functions by self time (last round):")
    for seconds, where in runs["honed-plain"][-1]["top"]:
        print(f"  {seconds * 1000:6.2f} ms/step  {where}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--contender", choices=tuple(CONTENDERS), help=argparse.SUPPRESS)
    args = p.parse_args()
    # the loops read these from bench/throughput.py's own arguments
    args.batch_size, args.max_length, args.seed, args.device, args.precision = 32, 64, 42, "cpu", "no"
    child(args) if args.contender else parent(args)


if __name__ == "__main__":
    main()
