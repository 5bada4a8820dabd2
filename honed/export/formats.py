"""The export formats: one small Exporter per format, looked up by name in EXPORTERS.

An exporter writes one model file from a classifier in eval mode, given an example batch (real rows)
and the input names in order; with `quantize="int8"` it applies dynamic int8 quantization of the
Linear layers (weights stored as int8, activations quantized on the fly per batch: no calibration data
needed, CPU only). Convolutions are left in float: dynamic quantization has no kernels worth having
for them, so a CNN shrinks only by its Linear head. Reading the file back is the inference layer's
job (honed.inference.exported.RUNTIMES), under the same format name.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from honed.inference.exported import require_onnxruntime
from honed.registry import Registry

QUANTIZE_MODES = ("int8",)


class PositionalForward(nn.Module):
    """The classifier's keyword forward as a positional one, in `names` order: torch.onnx and
    torch.jit.trace record positional inputs, and the runtimes feed them in that order."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, tensors, strict=True)))


class Exporter:
    """Writes a model file of one format; `file` is its name inside the exported folder and `runtime` the
    entry of honed.inference.exported.RUNTIMES that reads it back."""

    file: ClassVar[str] = ""
    runtime: ClassVar[str] = ""

    def check_available(self) -> None:
        """Fail in one line, before the model is loaded, when the format's runtime is missing."""

    def write(
        self,
        model: nn.Module,
        example: tuple[torch.Tensor, ...],
        names: list[str],
        axes: dict[str, dict[int, str]],
        path: Path,
        quantize: str | None,
    ) -> None:
        raise NotImplementedError


EXPORTERS: Registry[Exporter] = Registry("export format")


@EXPORTERS.register("onnx")
class OnnxExporter(Exporter):
    """torch.onnx (the TorchScript-based exporter: dynamic axes by name, no extra dependency) at opset 17;
    int8 through onnxruntime's dynamic quantizer on MatMul/Gemm (the Linear layers)."""

    file, runtime = "model.onnx", "onnx"

    def check_available(self) -> None:
        require_onnxruntime()

    def write(
        self,
        model: nn.Module,
        example: tuple[torch.Tensor, ...],
        names: list[str],
        axes: dict[str, dict[int, str]],
        path: Path,
        quantize: str | None,
    ) -> None:
        fp32 = path.with_name("model.fp32.onnx") if quantize else path
        with warnings.catch_warnings():  # the exporter's deprecation and tracer notes are not the user's business
            warnings.simplefilter("ignore")
            torch.onnx.export(
                PositionalForward(model, names).eval(),
                example,
                str(fp32),
                input_names=names,
                output_names=["logits"],
                dynamic_axes={**axes, "logits": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            logging.disable(logging.WARNING)  # its advice to pre-process (shape inference) goes to the root logger
            try:
                quantize_dynamic(
                    str(fp32),
                    str(path),
                    op_types_to_quantize=["MatMul", "Gemm"],
                    per_channel=True,
                    weight_type=QuantType.QInt8,
                )
            finally:
                logging.disable(logging.NOTSET)
            fp32.unlink()


@EXPORTERS.register("torchscript")
class TorchScriptExporter(Exporter):
    """torch.jit.trace over real rows (a traced HF encoder follows the batch and sequence sizes it is
    given); int8 through torch.ao dynamic quantization of nn.Linear before tracing."""

    file, runtime = "model.pt", "torchscript"

    def write(
        self,
        model: nn.Module,
        example: tuple[torch.Tensor, ...],
        names: list[str],
        axes: dict[str, dict[int, str]],
        path: Path,
        quantize: str | None,
    ) -> None:
        module: nn.Module = PositionalForward(model, names).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if quantize:
                config = torch.ao.quantization.per_channel_dynamic_qconfig
                module = torch.ao.quantization.quantize_dynamic(module, {nn.Linear: config}, dtype=torch.qint8)
            with torch.no_grad():
                traced = torch.jit.trace(module, example, check_trace=False)
            torch.jit.save(traced, str(path))
