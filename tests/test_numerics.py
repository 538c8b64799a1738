"""Provenance says what computed the numbers; portable mode gives the same bits whatever kernels the machine offers.

The portable test simulates two machines on one: each run starts with another
set of kernel choices in its environment (torch's AVX2 kernels, MKL's auto path,
numpy's AVX2 dispatch, OpenBLAS's Haswell kernels; or torch's baseline kernels,
numpy's baseline, OpenBLAS's Sandybridge kernels), encodes its features and
trains its models from scratch in its own cache, and must write bit-identical
predictions and scores. Should portable mode leave any of those choices to the
environment, the two runs compute with different kernels and differ (in native
mode they do: tests/test_reproducibility_contract.py, benchmarks/probe_numerics.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from cud_bench import numerics, records, runner
from cud_bench.errors import CudBenchError
from cud_bench.suites import SuiteSpec

ROOT = Path(__file__).parents[1]
TINY = {
    "name": "tiny-portable",
    "tasks": ["rt-polarity"],
    "methods": ["ce"],
    "seeds": [0],
    "protocols": ["in-sample"],
    "students": ["mlp-l3", "hashed-bag"],
    "max_train": 120,
    "max_test": 60,
    "shifts": ["char-swap"],
    "max_shift_examples": 12,
    "min_set_size": 10,  # a tiny suite: its sets are far below the benchmark's minimum of 100
    "ensemble_seeds": [1000],  # disjoint from the seeds, as every suite's must be
}
MACHINE_A = {"ATEN_CPU_CAPABILITY": "avx2", "OPENBLAS_CORETYPE": "Haswell"}
MACHINE_B = {
    "ATEN_CPU_CAPABILITY": "default",
    "NPY_DISABLE_CPU_FEATURES": "X86_V3,X86_V4,AVX512_ICL,AVX512_SPR",
    "OPENBLAS_CORETYPE": "Sandybridge",
    "OMP_NUM_THREADS": "2",
}


def test_cpu_info_reads_vendor_model_and_simd_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
        "flags\t\t: fpu sse sse2 avx2 fma avx512f avx512_bf16 amx_tile hypervisor\n\n"
        "processor\t: 1\nvendor_id\t: SomethingElse\n"
    )
    info = records.cpu_info.__wrapped__(str(cpuinfo))
    assert info["vendor"] == "GenuineIntel" and info["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["flags_simd"] == ["amx_tile", "avx2", "avx512_bf16", "avx512f", "fma", "sse", "sse2"]
    other = tmp_path / "other"
    other.write_text(cpuinfo.read_text().replace("avx512f ", ""))
    assert records.cpu_info.__wrapped__(str(other))["flags_sha256"] != info["flags_sha256"]
    assert records.cpu_info.__wrapped__(str(tmp_path / "absent")) == {
        "vendor": None, "model": None, "flags_simd": None, "flags_sha256": None
    }


def _numerics_of_a_process(env: dict[str, str]) -> dict:
    code = "import json; from cud_bench.records import provenance; print(json.dumps(provenance({})))"
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


def test_provenance_reports_the_kernels_the_process_really_uses():
    native = _numerics_of_a_process({})
    baseline = _numerics_of_a_process(
        {"ATEN_CPU_CAPABILITY": "default", "NPY_DISABLE_CPU_FEATURES": "X86_V3,X86_V4,AVX512_ICL,AVX512_SPR"}
    )
    assert native["hardware"]["cpu"]["flags_sha256"] == baseline["hardware"]["cpu"]["flags_sha256"]
    n, b = native["numerics"], baseline["numerics"]
    assert n["mode"] == b["mode"] == "native"
    assert b["torch_cpu_capability"] == "DEFAULT" and b["env"]["ATEN_CPU_CAPABILITY"] == "default"
    assert b["numpy_simd"]["dispatch"] == [] and b["numpy_simd"]["baseline"]
    if "avx2" in (native["hardware"]["cpu"]["flags_simd"] or []):
        assert n["torch_cpu_capability"] != "DEFAULT" and n["numpy_simd"]["dispatch"]
    assert n["blas"]["torch"]["blas"] == "mkl" and n["torch_threads"] >= 1


def test_a_process_that_was_not_started_portable_is_refused():
    assert numerics.current().name == "native" and numerics.cache_name("features") == "features"
    with pytest.raises(CudBenchError, match="portable numerics mode"):
        numerics.check_applied(numerics.modes.get("portable"))


def test_a_records_folder_holds_one_numerics_mode(tmp_path):
    suite = SuiteSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in TINY.items()})
    folder = tmp_path / suite.name
    folder.mkdir()
    (folder / "numerics.json").write_text(json.dumps({"mode": "portable"}))
    with pytest.raises(CudBenchError, match="made in portable numerics mode; this run is native"):
        runner.run_suite(suite, tmp_path, progress=False)
    (folder / "numerics.json").unlink()
    (folder / "records").mkdir()
    (folder / "records" / "old.json").write_text("{}")  # a run from before modes: native
    with pytest.raises(CudBenchError, match="made in native numerics mode; this run is portable"):
        runner.run_suite(suite, tmp_path, progress=False, numerics_mode="portable")


def _run(tmp_path: Path, cache: Path, name: str, env: dict[str, str], *flags: str) -> Path:
    suite_file = tmp_path / "tiny-portable.yaml"
    suite_file.write_text(yaml.safe_dump(TINY))
    out = tmp_path / name
    env = {**os.environ, **env, "CUD_BENCH_CACHE": str(cache)}
    subprocess.run(
        [sys.executable, "-m", "cud_bench.cli", "run", "--suite", str(suite_file), "--out", str(out), "--no-progress", *flags],
        env=env, cwd=ROOT, check=True, capture_output=True,
    )
    return out / TINY["name"] / "records"


def _numbers(record: dict) -> dict:
    """A record without what differs between runs of the same numbers (wall times, provenance)."""
    record = {k: v for k, v in record.items() if k != "provenance"}
    record["training"] = {k: v for k, v in record["training"].items() if k not in ("wall_s", "train_examples_per_s")}
    return record


def test_portable_mode_gives_the_same_bits_whatever_kernels_the_machine_offers(tmp_path, private_cache):
    a = _run(tmp_path, private_cache("cache-a"), "a", MACHINE_A, "--portable")
    b = _run(tmp_path, private_cache("cache-b"), "b", MACHINE_B, "--portable")
    names = sorted(p.name for p in a.glob("*.json"))
    assert len(names) == 2 and names == sorted(p.name for p in b.glob("*.json"))
    for name in names:
        ra, rb = json.loads((a / name).read_text()), json.loads((b / name).read_text())
        assert _numbers(ra) == _numbers(rb), name
        with np.load(a / name.replace(".json", ".npz")) as pa, np.load(b / name.replace(".json", ".npz")) as pb:
            assert pa.files == pb.files
            for key in pa.files:
                assert pa[key].tobytes() == pb[key].tobytes(), (name, key)
        for r in (ra, rb):
            n = r["provenance"]["numerics"]
            assert (n["mode"], n["torch_cpu_capability"], n["torch_threads"]) == ("portable", "DEFAULT", 1)
            assert n["env"]["MKL_CBWR"] == "COMPATIBLE,STRICT" and n["numpy_simd"]["dispatch"] == []
    assert json.loads((a.parent / "numerics.json").read_text())["mode"] == "portable"
