from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import quantkit
from quantkit import BenchOptions, QuantkitError, RuntimeSettings
from quantkit.bench.table import markdown
from quantkit.files.ownership import MARKDOWN_HEADER
from quantkit.runtime.base import RuntimeName

from .cli_helpers import quantkit as run_cli
from .cli_helpers import signed_json


def big_model(path: Path, megabytes: int) -> Path:
    """A model whose weights alone take ``megabytes``: its child's RSS must show them.

    A 1x1 convolution on a 1x1 image: the weights are big, the work is not.
    """
    weight = np.random.default_rng(0).standard_normal((megabytes * 2**20 // (4 * 3), 3, 1, 1))
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input.1", "w"], ["c"]),
            helper.make_node("ReduceMean", ["c"], ["m"], axes=[1], keepdims=1),
            helper.make_node("Sigmoid", ["m"], ["mask"]),
        ],
        "big",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 1, 1])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, 1, 1])],
        [numpy_helper.from_array(weight.astype(np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_child_process_rss_reflects_the_model(tmp_path: Path) -> None:
    small = big_model(tmp_path / "small.onnx", 1)
    large = big_model(tmp_path / "large.onnx", 64)
    report = quantkit.bench(small, large, options=BenchOptions(runs=4, warmup=1, rounds=2))
    small_r, large_r = report.results
    assert small_r.peak_rss_bytes > 20 * 2**20  # a Python + onnxruntime process
    # Separate processes: the large model's 64 MB show up in its own peak only.
    assert large_r.peak_rss_bytes - small_r.peak_rss_bytes > 50 * 2**20
    assert large_r.baseline_rss_bytes < large_r.peak_rss_bytes
    assert small_r.latency.runs == large_r.latency.runs == 4


def test_json_schema_and_markdown(tiny_model_path: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    args = [
        tiny_model_path,
        tiny_model_path,
        "--images",
        photos,
        "--runs",
        "6",
        "--threads",
        "1",
        "--no-arena",
    ]
    result = run_cli("bench", *args, "--json", out, "--markdown", md)
    assert result.code == 0, result.err
    data = signed_json(out.read_text(), "bench")
    assert set(data["environment"]) >= {"cpu", "cpu_count", "onnxruntime", "python"}
    assert data["settings"]["cpu_arena"] is False and data["settings"]["threads"] == 1
    assert data["runs"] == 6 and data["images"] == str(photos)
    assert len(data["models"]) == 2
    for entry in data["models"]:
        assert entry["model"] == str(tiny_model_path) and entry["runtime"] == "ort"
        assert entry["size_bytes"] == tiny_model_path.stat().st_size
        assert entry["peak_rss_bytes"] > entry["baseline_rss_bytes"] > 0
        assert set(entry["latency_ms"]) == {"p50", "p90", "mean", "runs"}
        assert entry["latency_ms"]["runs"] == 6
        assert entry["ratios"]["size"] == 1.0
    assert data["models"][0]["ratios"]["latency_p50"] == 1.0
    table = md.read_text()
    assert table.splitlines()[0] == MARKDOWN_HEADER  # signed: --force may replace it later
    assert "| # | size MB |" in table and "onnxruntime" in table and table.count("tiny.onnx") == 2
    assert "cpu_arena=False" in table and "threads=1" in table  # the settings travel with the figures
    # The terminal table: plain text, every model on its own line, no box drawing.
    assert "p50 ms" in result.out and result.out.count("tiny.onnx (ort)") == 2
    assert not set("┃━│─┏┗") & set(result.out)


def test_unavailable_provider_is_a_clear_error(tiny_model_path: Path) -> None:
    settings = RuntimeSettings(provider="CUDAExecutionProvider")
    with pytest.raises(QuantkitError, match="CUDAExecutionProvider is not available"):
        quantkit.bench(tiny_model_path, options=BenchOptions(runs=1, settings=settings))


def test_every_runtime_is_its_own_entry(tiny_model_path: Path) -> None:
    pytest.importorskip("openvino")
    options = BenchOptions(runs=2, warmup=0, rounds=1, runtimes=(RuntimeName.ORT, RuntimeName.OPENVINO))
    report = quantkit.bench(tiny_model_path, options=options)
    assert [r.entry.runtime for r in report.results] == [RuntimeName.ORT, RuntimeName.OPENVINO]
    assert all(r.latency.runs == 2 and r.peak_rss_bytes > 0 for r in report.results)
    assert "openvino" in report.environment
    text = markdown(report)
    assert "on ort" in text and "on openvino" in text and "runtime=" not in text


def test_child_rss_is_not_inherited_from_a_big_parent(tiny_model_path: Path) -> None:
    """ru_maxrss survives fork+exec on Linux; the child must report its own peak."""
    ballast = np.ones(400 * 2**20 // 8)  # this test process now holds 400 MB more
    report = quantkit.bench(tiny_model_path, options=BenchOptions(runs=2, warmup=0, rounds=1))
    assert report.results[0].peak_rss_bytes < 300 * 2**20
    del ballast


def test_runtime_settings_take_plain_strings_from_python_and_refuse_unknown_ones() -> None:
    settings = RuntimeSettings(runtime="openvino", opt_level="basic")  # type: ignore[arg-type]
    assert settings.runtime is RuntimeName.OPENVINO and settings.to_dict()["opt_level"] == "basic"
    with pytest.raises(QuantkitError, match="'tvm' is not a valid"):
        RuntimeSettings(runtime="tvm")  # type: ignore[arg-type]
