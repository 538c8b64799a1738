"""The reproducibility contract: on another CPU the numbers may differ in their last bits, the verdicts may not.

The session's smoke run (native kernels: AVX2 on CI's machines) is compared
with the same suite run again under another CPU capability: portable mode,
which uses torch's baseline (``DEFAULT``) kernels, MKL's compatible GEMM,
oneDNN at SSE4.1 and numpy's baseline, and encodes its features and trains its
teachers anew (corrupted texts too, in a private cache). Every claim of CI's claims file must get the
same status on both. (Bit-identity on one machine type is tested in
test_runner.py; portable runs' bit-identity across kernels in test_numerics.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from cud_bench import records
from cud_bench.cli import main
from cud_bench.runner import expand
from cud_bench.suites import suites

CI_CLAIMS = Path(__file__).parents[1] / "claims" / "smoke-ci.yaml"


def _statuses(results: Path, report: Path) -> dict[str, str]:
    main(["check", str(CI_CLAIMS), "--results", str(results), "--out", str(report)])
    return {v["claim"]: v["status"] for v in json.loads((report / "smoke-ci.json").read_text())["verdicts"]}


def test_smoke_claims_get_the_same_verdicts_under_another_cpu_capability(smoke_run, tmp_path, monkeypatch, private_cache):
    native, _ = smoke_run
    other = tmp_path / "portable"
    monkeypatch.setenv("CUD_BENCH_CACHE", str(private_cache("cache")))
    # only the methods the claims compare: a third of the suite's training (the run is ~2.4x slower)
    claims = yaml.safe_load(CI_CLAIMS.read_text())["claims"]
    methods = sorted({side.split(":")[0] for c in claims for side in (c["a"], c["b"])})
    run = ["run", "--suite", "smoke", "--methods", *methods, "--out", str(other), "--no-progress", "--jobs", "2", "--portable"]
    assert main(run) == 0

    cells = [c for c in expand(suites.get("smoke")) if c.method in methods]
    capabilities = set()
    differ = 0
    for cell in cells:
        a, b = records.read_record(cell.record_path(native)), records.read_record(cell.record_path(other))
        capabilities.add((a["provenance"]["numerics"]["torch_cpu_capability"], b["provenance"]["numerics"]["torch_cpu_capability"]))
        pa, pb = records.read_predictions(cell.record_path(native)), records.read_predictions(cell.record_path(other))
        differ += not np.array_equal(pa["clean/probs"], pb["clean/probs"])
    assert {b for _, b in capabilities} == {"DEFAULT"}
    # the second run really computed with other kernels (else the comparison below proves nothing)
    assert differ > 0, "the two runs have identical predictions: the second capability was not used"

    a, b = _statuses(native, tmp_path / "native-report"), _statuses(other, tmp_path / "other-report")
    assert set(a) == set(b) == {c["id"] for c in claims}
    assert a == b, f"verdicts depend on the CPU's kernels: native {a}, portable {b}"
