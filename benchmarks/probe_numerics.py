"""Which kernels change their results with the CPU path a library picks (see cud_bench/numerics.py).

Runs every kernel training uses once per setting, each setting in a fresh
process started with its environment (the libraries read it at import), and
prints which kernels give other bits than the native run. Inputs come from
numpy's generator, so they are the same bits in every process; random-draw
kernels start from the same torch seed. Run: ``python benchmarks/probe_numerics.py``.

``--speed`` measures what portable mode costs instead: encoding texts with
MiniLM-L6 and training an MLP head on them, native (one thread) against
portable, alternated in fresh processes, CPU seconds of each (the ratio is what
matters on a shared machine).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

NPY_OFF = "X86_V3,X86_V4,AVX512_ICL,AVX512_SPR"
SETTINGS = {
    "native": {},
    "ATen default": {"ATEN_CPU_CAPABILITY": "default"},
    "MKL compatible": {"MKL_CBWR": "COMPATIBLE"},
    "MKL_CBWR=AVX": {"MKL_CBWR": "AVX"},
    "MKL SSE4.2 only": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "oneDNN SSE4.1": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "numpy baseline": {"NPY_DISABLE_CPU_FEATURES": NPY_OFF},
    "OpenBLAS Sandybridge": {"OPENBLAS_CORETYPE": "Sandybridge"},
    "libm without FMA": {"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA"},
    "1 thread": {"PROBE_THREADS": "1"},
}


def probe() -> dict[str, str]:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from scipy.special import softmax

    if os.environ.get("PROBE_THREADS"):
        torch.set_num_threads(int(os.environ["PROBE_THREADS"]))
    rng = np.random.default_rng(0)

    def t(*shape: int) -> torch.Tensor:
        return torch.from_numpy(rng.standard_normal(shape).astype(np.float32))

    def h(x) -> str:
        x = x.detach().contiguous().numpy() if isinstance(x, torch.Tensor) else np.ascontiguousarray(x)
        return hashlib.sha256(x.tobytes()).hexdigest()[:12]

    x, w, b, logits20, logits2, h3 = t(256, 384), t(512, 384) * 0.05, t(512), t(256, 20), t(256, 2), t(8, 64, 384)
    y20 = torch.from_numpy(rng.integers(0, 20, 256))
    out = {
        "GEMM (nn.Linear, MKL sgemm)": h(F.linear(x, w, b)),
        "batched GEMM (attention)": h(torch.bmm(h3, h3.transpose(1, 2))),
        "GELU (oneDNN eltwise)": h(F.gelu(x)),
        "exp / log / tanh": h(torch.stack([torch.exp(x), torch.log(x.abs() + 1), torch.tanh(x)])),
        "softmax, 20 classes": h(torch.softmax(logits20, 1)),
        "softmax, 2 classes": h(torch.softmax(logits2, 1)),
        "log_softmax, 20 classes": h(F.log_softmax(logits20, 1)),
        "layer_norm": h(F.layer_norm(x, (384,))),
        "sum over rows": h(x.sum(1)),
        "sum of a whole tensor": h(x.sum()),
    }
    ww = w.clone().requires_grad_()
    F.cross_entropy(F.linear(x, ww[:20]), y20).backward()
    out["cross-entropy backward"] = h(ww.grad)
    p = torch.nn.Parameter(w.clone())
    opt = torch.optim.AdamW([p], lr=1e-3)
    for grad in (t(512, 384), t(512, 384), t(512, 384)):
        p.grad = grad
        opt.step()
    out["AdamW step"] = h(p)
    torch.manual_seed(0)
    out["normal_ (embedding init)"] = h(torch.nn.init.normal_(torch.empty(300, 64)))
    torch.manual_seed(0)
    out["uniform_ (Linear init)"] = h(torch.nn.Linear(384, 64).weight)
    torch.manual_seed(0)
    out["dropout mask"] = h(F.dropout(torch.ones(64, 384), 0.1, training=True))
    out["randperm (batch order)"] = h(torch.randperm(2000, generator=torch.Generator().manual_seed(1)))
    a = rng.standard_normal((300, 20))
    out["numpy exp float32"] = h(np.exp(a.astype(np.float32)))
    out["numpy exp float64 (libm)"] = h(np.exp(a))
    out["scipy softmax float64"] = h(softmax(a, axis=1))
    out["numpy matmul float64 (OpenBLAS)"] = h(a @ a.T)
    return out


def speed() -> dict[str, float]:
    """CPU seconds to encode 512 texts with MiniLM-L6 and to train an MLP head 10 epochs on 2,000 rows."""
    import time

    import numpy as np
    import torch

    from cud_bench.models.features import embed
    from cud_bench.models.encoders import load_encoder
    from cud_bench.models.heads import MLPHead

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    words = ["the", "film", "was", "not", "good", "great", "flight", "delayed", "plot", "acting", "boring", "loved"]
    texts = [" ".join(rng.choice(words, 30)) for _ in range(512)]
    tokenizer, model = load_encoder("minilm-l6", device="cpu")
    clock = time.process_time()
    embed(tokenizer, model, texts, max_length=64)
    encode_s = time.process_time() - clock
    x = torch.from_numpy(rng.standard_normal((2000, 384)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 20, 2000))
    torch.manual_seed(0)
    head = MLPHead(384, 256, 20, 0.1)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3)
    clock = time.process_time()
    for _ in range(10):
        for idx in torch.randperm(2000, generator=torch.Generator().manual_seed(0)).split(32):
            loss = torch.nn.functional.cross_entropy(head(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {"encode 512 texts": encode_s, "train head 10 epochs": time.process_time() - clock}


def main_speed(rounds: int = 3) -> None:
    from cud_bench.numerics import modes

    settings = {"native, 1 thread": {"OMP_NUM_THREADS": "1"}, "portable": dict(modes.get("portable").env)}
    times: dict[str, list[dict[str, float]]] = {name: [] for name in settings}
    for _ in range(rounds):  # alternated, so that load from other processes hits both alike
        for name, env in settings.items():
            done = subprocess.run(
                [sys.executable, __file__, "--speed-probe"], env={**os.environ, **env}, capture_output=True, text=True, check=True
            )
            times[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    for task in times["portable"][0]:
        best = {name: min(t[task] for t in runs) for name, runs in times.items()}
        native, portable = best["native, 1 thread"], best["portable"]
        print(f"{task}: native {native:.2f} s, portable {portable:.2f} s CPU (best of {rounds}): x{portable / native:.2f}")


def main() -> None:
    runs = {}
    for name, env in SETTINGS.items():
        done = subprocess.run(
            [sys.executable, __file__, "--probe"], env={**os.environ, **env}, capture_output=True, text=True, check=True
        )
        runs[name] = json.loads(done.stdout.strip().splitlines()[-1])
    native = runs.pop("native")
    width = max(map(len, native))
    print(f"{'kernel':{width}s}  settings that change its bits (vs native)")
    for kernel, digest in native.items():
        changed = [name for name, r in runs.items() if r[kernel] != digest]
        print(f"{kernel:{width}s}  {', '.join(changed) or '-'}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--probe"]:
        print(json.dumps(probe()))
    elif sys.argv[1:] == ["--speed-probe"]:
        print(json.dumps(speed()))
    elif sys.argv[1:] == ["--speed"]:
        main_speed()
    else:
        main()
