from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from quantkit.bench import BenchOptions, bench, markdown
from quantkit.errors import QuantkitError
from quantkit.session import SessionSettings

from .cli_helpers import quantkit


def big_model(path: Path, megabytes: int) -> Path:
    """A model whose weights alone take ``megabytes``: its child's RSS must show them."""
    channels = 3
    weight = np.random.default_rng(0).standard_normal(
        (megabytes * 2**20 // (4 * 9 * channels), channels, 3, 3)
    )
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input.1", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("ReduceMean", ["c"], ["m"], axes=[1], keepdims=1),
            helper.make_node("Sigmoid", ["m"], ["mask"]),
        ],
        "big",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, 16, 16])],
        [numpy_helper.from_array(weight.astype(np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_child_process_rss_reflects_the_model(tmp_path: Path) -> None:
    small = big_model(tmp_path / "small.onnx", 1)
    large = big_model(tmp_path / "large.onnx", 64)
    report = bench(BenchOptions(models=(small, large), runs=4, warmup=1, rounds=2))
    small_r, large_r = report.results
    assert small_r.peak_rss_bytes > 20 * 2**20  # a Python + onnxruntime process
    # Separate processes: the large model's 64 MB show up in its own peak only.
    assert large_r.peak_rss_bytes - small_r.peak_rss_bytes > 50 * 2**20
    assert large_r.baseline_rss_bytes < large_r.peak_rss_bytes
    assert small_r.latency.runs == large_r.latency.runs == 4


def test_json_schema_and_markdown(tiny_model_path: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    result = quantkit(
        "bench",
        tiny_model_path,
        tiny_model_path,
        "--images",
        photos,
        "--runs",
        "6",
        "--threads",
        "1",
        "--no-arena",
        "--json",
        out,
        "--markdown",
        md,
    )
    assert result.code == 0, result.err
    data = json.loads(out.read_text())
    assert set(data["environment"]) >= {"cpu", "onnxruntime", "python"}
    assert len(data["models"]) == 2
    for entry in data["models"]:
        assert entry["size_bytes"] == tiny_model_path.stat().st_size
        assert entry["peak_rss_bytes"] > 0
        assert set(entry["latency_ms"]) == {"p50", "p90", "mean", "runs"}
        assert entry["latency_ms"]["runs"] == 6
        assert entry["settings"]["cpu_arena"] is False and entry["settings"]["intra_threads"] == 1
        assert entry["ratios"]["size"] == 1.0
    assert data["models"][0]["ratios"]["latency_p50"] == 1.0
    table = md.read_text()
    assert "| model |" in table and "onnxruntime" in table and table.count("tiny.onnx") == 2


def test_unavailable_provider_is_a_clear_error(tiny_model_path: Path) -> None:
    with pytest.raises(QuantkitError, match="not available"):
        bench(
            BenchOptions(
                models=(tiny_model_path,), runs=1, settings=SessionSettings(provider="CUDAExecutionProvider")
            )
        )


def test_markdown_mentions_settings(tiny_model_path: Path) -> None:
    report = bench(BenchOptions(models=(tiny_model_path,), runs=2, warmup=0, rounds=1))
    assert "cpu_arena=True" in markdown(report)


def test_child_rss_is_not_inherited_from_a_big_parent(tiny_model_path: Path) -> None:
    """ru_maxrss survives fork+exec on Linux; the child must report its own peak."""
    ballast = np.ones(400 * 2**20 // 8)  # this test process now holds 400 MB more
    report = bench(BenchOptions(models=(tiny_model_path,), runs=2, warmup=0, rounds=1))
    assert report.results[0].peak_rss_bytes < 300 * 2**20
    del ballast
