#!/usr/bin/env bash
# The GPU path, measured in one go (issue 13, item 6): on a machine with CUDA, run the quickstart
# training with bf16 autocast (fp16 where the card has no bf16) and the training-throughput benchmark on
# the GPU, and print the figures with the card's name. On a machine without CUDA it says so and exits 0.
#
#   bash bench/gpu_check.sh            # print the figures
#   bash bench/gpu_check.sh --write    # also append the throughput section to bench/RESULTS.md
#
# Environment: PYTHON (default .venv/bin/python), OUT_DIR (default runs/gpu-check), SAMPLES (throughput
# benchmark reviews, default 4096), REPEATS (its fresh-process rounds, default 3).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
OUT_DIR="${OUT_DIR:-runs/gpu-check}"
SAMPLES="${SAMPLES:-4096}"
REPEATS="${REPEATS:-3}"
WRITE=()
[[ "${1:-}" == "--write" ]] && WRITE=(--write)
export HF_HUB_OFFLINE=1

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu_check: no CUDA here (nvidia-smi not found); the GPU path stays unmeasured on this machine"
    exit 0
fi
if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: nvidia-smi is present but torch sees no CUDA device; the GPU path stays unmeasured"
    exit 0
fi

CARD="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)"
PRECISION="$("$PYTHON" -c "import torch; print('bf16' if torch.cuda.is_bf16_supported() else 'fp16')")"
echo "gpu_check: card ${CARD}; precision ${PRECISION}; torch $("$PYTHON" -c 'import torch; print(torch.__version__)')"

# 1. The quickstart (what `make demo` trains), on the GPU with autocast.
started=$(date +%s)
"$PYTHON" -m honed.cli train recipes/quickstart.yaml --overwrite --quiet --output "${OUT_DIR}/quickstart" \
    "train.precision=${PRECISION}"
wall=$(( $(date +%s) - started ))
"$PYTHON" - "${OUT_DIR}/quickstart/results.json" "${CARD}" "${PRECISION}" "${wall}" <<'EOF'
import json, sys

path, card, precision, wall = sys.argv[1:]
r = json.load(open(path))
print(f"quickstart on {card} ({precision} autocast, device {r.get('device')}): wall {wall} s, "
      f"train {r['train_samples_per_s']:.1f} samples/s, test accuracy {r['test_accuracy']:.4f}, "
      f"val accuracy {r['val_accuracy']:.4f}, {r['steps']} steps")
EOF

# 2. The training-throughput benchmark (honed vs hand-written loop vs HF Trainer), fresh processes, alternating.
"$PYTHON" bench/throughput.py --device cuda --precision "${PRECISION}" --samples "${SAMPLES}" \
    --repeats "${REPEATS}" "${WRITE[@]}"
echo "gpu_check: done on ${CARD}"
