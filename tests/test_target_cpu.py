"""INT8 files that are right on every CPU, whichever CPU quantized them.

quantize used to read the quantizing CPU's flags: with VNNI it stored 8-bit weights, which
saturate onnxruntime's AVX2 kernels (``vpmaddubsw`` 16-bit pair sums) when the file is served
on a CPU without VNNI - measured held-out IoU 0.80 there. Now the file's target decides: by
default 7-bit weights (|w| <= 64) and the same bytes whatever CPU quantizes; 8-bit weights only
with ``--target-cpu vnni``, recorded in the file and refused by quantkit's runtime on a CPU
without VNNI. The quantizing CPU is simulated with ``detect(cpuinfo=...)`` on fake
/proc/cpuinfo files, so every test here holds on a VNNI machine and on an AVX2 one alike;
where one runs the real CPU (the CLI), it says what it expects on each.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image

import quantkit
from quantkit.errors import QuantkitError
from quantkit.isa import IsaInfo, TargetCpu, detect, host_isa
from quantkit.model.metadata import read_metadata
from quantkit.model.preprocess import preprocess
from quantkit.model.spec import read_spec
from quantkit.progress import NullProgress
from quantkit.ptq.options import QuantizeOptions
from quantkit.ptq.pipeline import plan_quantize, run_quantize
from quantkit.ptq.report import QuantizeReport
from quantkit.runtime import open_runner
from quantkit.runtime.base import OptLevel, RuntimeName, RuntimeSettings

from .cli_helpers import assert_one_line_error
from .cli_helpers import quantkit as run_cli
from .conftest import U2NETP

X86_VNNI = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni"
X86_AVX2 = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma"
ARM_DOTPROD = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimdrdm asimddp"


def fake_cpu(folder: Path, name: str, flags: str, machine: str = "x86_64") -> IsaInfo:
    """The features quantkit reads from a /proc/cpuinfo holding ``flags``."""
    path = folder / f"cpuinfo-{name}"
    key = "Features" if machine == "aarch64" else "flags"
    path.write_text(f"processor\t: 0\nmodel name\t: fake {name}\n{key}\t\t: {flags}\n\n")
    return detect(path, machine=machine)


@pytest.fixture()
def cpus(tmp_path: Path) -> dict[str, IsaInfo]:
    return {
        "vnni": fake_cpu(tmp_path, "vnni", X86_VNNI),
        "avx2": fake_cpu(tmp_path, "avx2", X86_AVX2),
        "arm": fake_cpu(tmp_path, "arm", ARM_DOTPROD, machine="aarch64"),
    }


def conv_weights(path: Path) -> list[np.ndarray]:
    """The integer weights of every quantized convolution (QDQ: Conv <- DequantizeLinear <- int8)."""
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    weights = []
    for node in model.graph.node:
        dq = producer.get(node.input[1]) if node.op_type == "Conv" else None
        if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in inits:
            weights.append(numpy_helper.to_array(inits[dq.input[0]]).astype(np.int32))
    assert weights, "no quantized convolution found"
    return weights


def max_abs_weight(path: Path) -> int:
    return max(int(np.abs(w).max()) for w in conv_weights(path))


def quantize_as_if_on(
    isa: IsaInfo, model: Path, photos: Path, output: Path, target: TargetCpu = TargetCpu.ANY
) -> QuantizeReport:
    """Quantize as the pipeline would on a CPU with ``isa``'s features."""
    options = QuantizeOptions(calib_dir=photos, target_cpu=target)
    return run_quantize(plan_quantize(model, output=output, options=options, isa=isa))


def test_detection_reads_the_dot_product_flags(cpus: dict[str, IsaInfo], tmp_path: Path) -> None:
    vnni, avx2, arm = cpus["vnni"], cpus["avx2"], cpus["arm"]
    assert (vnni.vnni, vnni.avx2, vnni.describe()) == (True, True, "x86_64, AVX-512 VNNI")
    assert (avx2.vnni, avx2.avx2, avx2.describe()) == (False, True, "x86_64, AVX2, no VNNI")
    assert (arm.vnni, arm.describe()) == (True, "aarch64, dot product")
    assert fake_cpu(tmp_path, "laptop", X86_AVX2 + " avx_vnni").describe() == "x86_64, AVX-VNNI"
    for cpu in cpus.values():
        assert cpu.runs(TargetCpu.ANY)
    assert vnni.runs(TargetCpu.VNNI) and arm.runs(TargetCpu.VNNI) and not avx2.runs(TargetCpu.VNNI)
    assert TargetCpu.ANY.weight_bits == 7 and TargetCpu.VNNI.weight_bits == 8
    assert host_isa().describe()  # whatever this machine is, it can say


def test_the_default_file_is_the_same_whichever_cpu_quantizes(
    cpus: dict[str, IsaInfo], tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    """Same inputs, same bytes on a VNNI, an AVX2 and an ARM CPU: 7-bit weights, target 'any'."""
    files = {}
    for name, cpu in cpus.items():
        files[name] = tmp_path / f"{name}.onnx"
        report = quantize_as_if_on(cpu, tiny_model_path, photos, files[name])
        assert report.isa == cpu
        isa = report.to_dict()["isa"]
        assert (isa["target_cpu"], isa["weight_bits"], isa["description"]) == ("any", 7, cpu.describe())
    data = {name: path.read_bytes() for name, path in files.items()}
    assert data["vnni"] == data["avx2"] == data["arm"]
    assert max_abs_weight(files["vnni"]) <= 64
    meta = read_metadata(files["vnni"])
    assert (meta["quantkit.target_cpu"], meta["quantkit.weight_bits"]) == ("any", "7")
    assert meta == {p.key: p.value for p in onnx.load(str(files["vnni"])).metadata_props}


@pytest.mark.slow
def test_the_default_u2netp_of_a_vnni_machine_is_safe_on_avx2(
    cpus: dict[str, IsaInfo], tmp_path: Path
) -> None:
    """On a VNNI CPU quantkit used to write max |w| 127; served on AVX2 those pair sums saturate.
    Every Conv weight of the default file now fits 7 bits (and uses them: max |w| is 64)."""
    out = tmp_path / "u2netp.int8.onnx"
    job = plan_quantize(U2NETP, output=out, isa=cpus["vnni"])
    report = run_quantize(job)
    assert report.options.target_cpu is TargetCpu.ANY
    weights = conv_weights(out)
    assert len(weights) >= 100 and max(int(np.abs(w).max()) for w in weights) == 64
    assert read_metadata(out)["quantkit.target_cpu"] == "any"
    open_runner(out, isa=cpus["avx2"])  # not refused on AVX2


def test_a_vnni_file_has_8_bit_weights_and_is_refused_where_they_would_saturate(
    cpus: dict[str, IsaInfo], tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "vnni.onnx"
    report = quantize_as_if_on(cpus["vnni"], tiny_model_path, photos, out, TargetCpu.VNNI)
    assert max_abs_weight(out) == 127
    meta = read_metadata(out)
    assert (meta["quantkit.target_cpu"], meta["quantkit.weight_bits"]) == ("vnni", "8")
    isa = report.to_dict()["isa"]
    assert (isa["target_cpu"], isa["weight_bits"], isa["reduce_range"]) == ("vnni", 8, False)

    spec = read_spec(tiny_model_path)
    with Image.open(sorted(photos.iterdir())[0]) as image:
        tensor = preprocess(image.convert("RGB"), spec)
    on_vnni = open_runner(out, isa=cpus["vnni"]).run(tensor)
    assert open_runner(out, isa=cpus["arm"]).run(tensor).shape == on_vnni.shape
    for settings in (RuntimeSettings(), RuntimeSettings(runtime=RuntimeName.OPENVINO)):
        with pytest.raises(QuantkitError) as caught:
            open_runner(out, settings, isa=cpus["avx2"])
        message = str(caught.value)
        assert "\n" not in message and "--target-cpu vnni" in message and "x86_64, AVX2, no VNNI" in message
    # onnxruntime with graph optimisations off runs the QDQ graph in float: no integer kernel, allowed.
    in_float = open_runner(out, RuntimeSettings(opt_level=OptLevel.DISABLE), isa=cpus["avx2"]).run(tensor)
    assert np.abs(in_float - on_vnni).max() < 0.05


def test_quantizing_for_vnni_on_a_cpu_without_it_checks_the_qdq_graph_in_float(
    cpus: dict[str, IsaInfo], tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    """The file is for other machines; the check cannot trust this CPU's integer kernels with
    it, so it runs the file's QDQ graph as written, in float - and says so."""
    progress = NullProgress()
    options = QuantizeOptions(calib_dir=photos, target_cpu=TargetCpu.VNNI)
    job = plan_quantize(
        tiny_model_path, output=tmp_path / "a.onnx", options=options, isa=cpus["avx2"], progress=progress
    )
    assert job.check_settings.opt_level is OptLevel.DISABLE
    assert any("QDQ graph in float" in w for w in progress.warnings), progress.warnings
    on_avx2 = run_quantize(job, progress)
    on_vnni = quantize_as_if_on(cpus["vnni"], tiny_model_path, photos, tmp_path / "b.onnx", TargetCpu.VNNI)
    assert on_avx2.check is not None and on_vnni.check is not None
    assert on_avx2.check.final.mean == pytest.approx(on_vnni.check.final.mean, abs=0.02)
    assert on_avx2.to_dict()["isa"]["check_runs_integer_kernels"] is False
    assert onnx.load(str(tmp_path / "a.onnx")).graph == onnx.load(str(tmp_path / "b.onnx")).graph
    assert replace(job, isa=cpus["vnni"]).check_settings.opt_level is OptLevel.ALL


def test_compare_and_bench_say_which_cpu_and_refuse_a_vnni_file_without_vnni(
    tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    """On the real CPU: a VNNI machine runs the file and names its ISA; any other refuses it in
    one line (exit 2) - compare in this process, bench in its child."""
    out = tmp_path / "vnni.onnx"
    quantkit.quantize(
        tiny_model_path, output=out, options=QuantizeOptions(calib_dir=photos, target_cpu=TargetCpu.VNNI)
    )
    here = host_isa()
    compare = run_cli("compare", tiny_model_path, out, "--images", photos, "--no-config", "--json", "-")
    bench = run_cli("bench", tiny_model_path, out, "--runs", "2", "--json", "-")
    if here.runs(TargetCpu.VNNI):
        assert compare.code == 0 and bench.code == 0, (compare.err, bench.err)
        assert f"CPU: {here.describe()}" in compare.err  # the table goes to stderr when --json - takes stdout
        assert json.loads(compare.out)["isa"]["description"] == here.describe()
        assert here.describe() in bench.err and json.loads(bench.out)["isa"]["vnni"] is True
    else:
        for result in (compare, bench):
            assert_one_line_error(result, 2, "--target-cpu vnni")
    plain = run_cli("compare", tiny_model_path, tiny_model_path, "--images", photos, "--no-config")
    assert plain.code == 0 and f"CPU: {here.describe()}" in plain.out
