"""Making a float model ready for quantization, and giving the result back its interface.

onnxruntime's quantizer wants opset >= 13 and shape annotations on every tensor
(``quant_pre_process``: symbolic shape inference, then ONNX's optimizer). Two
traps handled here:

- a model with dynamic batch/height/width (rembg's exports are fixed, custom
  exports often are not) leaves shape inference with unknown ranks, and the
  statistics graphs then fail with obscure shape errors. It is prepared with
  its input fixed at the family's size, and the quantized model gets the original
  dynamic input and output shapes back (:func:`restore_interface`) when it still
  runs at another size. Preparing at a fixed size can bake sizes into the graph
  (u2netp with open height/width then quantizes to a model whose Resizes carry
  320-pixel constants: at 256×192 a Concat fails), so the caller tries the
  restored model at another size (:func:`other_size_input`) and otherwise keeps
  the fixed interface - the one rembg feeds anyway - and says so;
- symbolic shape inference dumps ``sym_shape_infer_temp.onnx`` and a ``.data``
  file into the *working directory* when it gives up - that must not be the
  user's folder, so it runs inside the scratch folder.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import onnx

from quantkit.errors import QuantkitError
from quantkit.graph.index import copy_model
from quantkit.graph.opset import MIN_QDQ_OPSET, upgrade_opset


@contextlib.contextmanager
def _inside(folder: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def with_static_input(model: onnx.ModelProto, height: int, width: int) -> onnx.ModelProto:
    """``model`` with its image input fixed at [1, 3, height, width] (unchanged if already so)."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    wanted = (1, 3, height, width)
    if all(d.HasField("dim_value") and d.dim_value == w for d, w in zip(dims, wanted, strict=True)):
        return model
    fixed = copy_model(model)
    for dim, value in zip(fixed.graph.input[0].type.tensor_type.shape.dim, wanted, strict=True):
        dim.Clear()
        dim.dim_value = value
    for output in fixed.graph.output:
        output.type.tensor_type.ClearField("shape")
    del fixed.graph.value_info[:]
    return fixed


def prepare(model: onnx.ModelProto, work: Path) -> Path:
    """Upgrade the opset and run ``quant_pre_process``; returns the prepared file in ``work``."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    upgraded = upgrade_opset(model, MIN_QDQ_OPSET)
    work = work.resolve()
    raw = work / "upgraded.onnx"
    onnx.save(upgraded, str(raw))
    prepared = work / "prepared.onnx"
    with _inside(work):
        try:
            quant_pre_process(str(raw), str(prepared), skip_symbolic_shape=False)
        except OSError:  # a full disk is not a graph problem: the scratch folder says where
            raise
        except Exception as exc:  # symbolic shape inference fails on exotic graphs
            try:
                quant_pre_process(str(raw), str(prepared), skip_symbolic_shape=True)
            except OSError:
                raise
            except Exception:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise QuantkitError(f"onnxruntime's quant_pre_process failed: {first[:200]}") from exc
    raw.unlink()
    return prepared


def restore_interface(model: onnx.ModelProto, original: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with the input and output shapes of ``original`` (same names), e.g. dynamic sizes."""
    shapes = {v.name: v.type for v in [*original.graph.input, *original.graph.output]}
    values = [*model.graph.input, *model.graph.output]
    if all(v.name not in shapes or v.type == shapes[v.name] for v in values):
        return model
    restored = copy_model(model)
    for value in [*restored.graph.input, *restored.graph.output]:
        if value.name in shapes:
            value.type.CopyFrom(shapes[value.name])
    del restored.graph.value_info[:]  # annotations were inferred at the fixed size
    return restored


def other_size_input(model: onnx.ModelProto) -> tuple[str, tuple[int, ...]]:
    """Input name and a shape unlike the fixed one the model was prepared at: half the height and width."""
    value = model.graph.input[0]
    dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
    batch, channels, height, width = dims
    return value.name, (batch, channels, max(16, height // 2), max(16, width // 2))
