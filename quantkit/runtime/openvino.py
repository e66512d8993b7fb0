"""OpenVINO as a second runtime: the same ONNX files, compiled by Intel's CPU plugin.

Why a second runtime: OpenVINO compiles the QDQ INT8 file quantkit writes as it is
and runs its convolutions in integers (all 119 of the INT8 u2netp's as ``u8``,
``jit_avx2_I8``, see :meth:`OpenVinoRunner.conv_precisions`). Measured on a 2-core
AVX2 EPYC without VNNI, p50 of 30 interleaved runs, relative to onnxruntime FP32
(289 ms with 2 threads): OpenVINO FP32 0.90, onnxruntime INT8 0.55, OpenVINO INT8
0.50. Its peak RSS after 10 runs was 248 MiB for FP32 (onnxruntime 535, 341 with
memory patterns off) and 198 MiB for INT8 (onnxruntime 227, 147).

Why these compile properties:

- ``INFERENCE_PRECISION_HINT=f32``: on CPUs with bf16 (AVX-512 BF16, AMX) OpenVINO's
  default runs the float parts in bf16, which moved the FP32 u2netp's masks to
  IoU 0.93. On CPUs without bf16 the default is already f32 (masks bit-identical
  with and without the hint on 100 ECSSD photos) and a bf16 request silently falls
  back to f32, so forcing it costs nothing there.
- ``PERFORMANCE_HINT=LATENCY`` and ``NUM_STREAMS=1``: one photo at a time, as rembg runs.
- ``INFERENCE_NUM_THREADS``: ``RuntimeSettings.threads`` (0 keeps OpenVINO's default,
  one per core).
- ``ENABLE_CPU_PINNING=NO`` when ``RuntimeSettings.spinning`` is off. The CPU
  plugin's TBB threads have no wait policy to set, so there is no equivalent of
  onnxruntime's spinning; but ``spinning=False`` means "the machine is busy", and
  there pinned threads cannot leave the busy core: with the second core running a
  busy loop, unpinned INT8 ran at 0.91x of pinned (p50, two runs of 30 and 40), FP32
  at 0.97-0.99x; on an idle machine unpinned cost 0-3%, as spinning off does for
  onnxruntime.

The model is read through OpenVINO's ONNX frontend rather than ``Core.read_model``,
which tries every frontend it ships on a file it cannot parse: a broken ``.onnx``
then made the TensorFlow frontend print parser errors to stderr.

``openvino`` is imported in the constructor, not at module import: importing it
takes ~190 ms and loads ~130 modules, which ``remove`` and ``compare`` on
onnxruntime should never pay for.
"""

from __future__ import annotations

import importlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from quantkit.errors import QuantkitError
from quantkit.runtime.base import RuntimeSettings


def compile_config(settings: RuntimeSettings) -> dict[str, str]:
    """The CPU plugin properties quantkit compiles with (see the module docstring for why)."""
    config = {
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": str(settings.threads),
    }
    if not settings.spinning:
        config["ENABLE_CPU_PINNING"] = "NO"
    return config


def _import_openvino() -> Any:
    try:
        return importlib.import_module("openvino")
    except ImportError as exc:
        raise QuantkitError('OpenVINO is not installed: pip install "quantkit[openvino]"') from exc


def _reason(exc: BaseException) -> str:
    """OpenVINO's messages start with source locations; the cause is the last line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


class OpenVinoRunner:
    """One ONNX model compiled for OpenVINO's CPU plugin, with one reused infer request."""

    def __init__(self, model: Path, settings: RuntimeSettings, mask_output: int = 0) -> None:
        ov = _import_openvino()
        try:
            frontend = ov.frontend.FrontEndManager().load_by_framework("onnx")
            graph = frontend.convert(frontend.load(str(model)))
            self._compiled = ov.Core().compile_model(graph, "CPU", compile_config(settings))
        except Exception as exc:  # OpenVINO raises RuntimeError and its own frontend types
            raise QuantkitError(f"openvino cannot load {model}: {_reason(exc)}") from exc
        inputs = self._compiled.inputs
        if len(inputs) != 1:
            raise QuantkitError(f"model {model} has {len(inputs)} inputs; expected one image input")
        outputs = len(self._compiled.outputs)
        if not 0 <= mask_output < outputs:
            raise QuantkitError(f"model {model} has {outputs} outputs; there is no output {mask_output}")
        self._input_name: str = inputs[0].get_any_name()
        self._dtype = np.float16 if inputs[0].get_element_type() == ov.Type.f16 else np.float32
        self._mask_output = mask_output
        self._request = self._compiled.create_infer_request()

    @property
    def input_name(self) -> str:
        return self._input_name

    @property
    def precision_hint(self) -> str:
        """The inference precision the compiled model actually uses ('f32')."""
        return str(self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())

    @property
    def threads(self) -> int:
        """The threads the compiled model uses: OpenVINO's own count when settings asked for 0."""
        return int(self._compiled.get_property("INFERENCE_NUM_THREADS"))

    @property
    def pinned(self) -> bool:
        """Whether the compiled model pins its threads to cores (off when settings.spinning is off)."""
        return bool(self._compiled.get_property("ENABLE_CPU_PINNING"))

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """Run and copy out the mask output only.

        ``share_outputs`` hands back views of the request's buffers, which the next
        ``run`` overwrites, so the mask is copied; the six side outputs are not.
        """
        feed = tensor.astype(self._dtype, copy=False)
        outputs = self._request.infer({0: feed}, share_inputs=True, share_outputs=True)
        return np.array(outputs[self._mask_output], copy=True)

    def conv_precisions(self) -> dict[str, int]:
        """How many convolutions run in each precision, as compiled: {'u8': 119} for INT8 u2netp."""
        counts: Counter[str] = Counter()
        for op in self._compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str) == "Convolution":
                counts[info["runtimePrecision"].astype(str)] += 1
        return dict(counts)
