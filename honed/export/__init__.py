"""Export a saved model for deployment: ONNX or TorchScript, optionally int8 (`honed export`,
`honed.export.export_model(...)`), checked against PyTorch and reported before/after.

The formats are a small table (honed/export/formats.py); the exported folder is read back by the
inference layer's ExportedPredictor, so `honed predict` and `honed evaluate` take it like a model folder.
"""

from __future__ import annotations

from honed.export.command import MIN_AGREEMENT, export_model
from honed.export.formats import EXPORTERS, QUANTIZE_MODES, Exporter

__all__ = ["EXPORTERS", "MIN_AGREEMENT", "QUANTIZE_MODES", "Exporter", "export_model"]
