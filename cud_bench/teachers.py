"""Teachers: each distinct teacher is trained once and kept on disk (weights, logits, card).

A teacher is identified by (task spec, subset, recipe spec, architecture spec, seed, fold,
number of folds). The full-data teacher labels its own training set (``in-sample``) and is
the one scored; the fold teachers label the folds they did not see (``cross-fit``).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from cud_bench import calibration, numerics
from cud_bench.io import MANIFEST, atomic_path, cache_dir, count_rebuilt, manifest_problems, write_json_atomic, write_manifest
from cud_bench.models.architectures import Architecture
from cud_bench.recipes import Component, component
from cud_bench.stages import Telling
from cud_bench.taskdata import Inputs, TaskData, derive_seed, fit
from cud_bench.train import predict_logits
from shifts import TeacherProbs

if TYPE_CHECKING:
    from cud_bench.scoring import ShiftSets

log = logging.getLogger(__name__)
TEACHER_CACHE_VERSION = 1

def ensemble_recipe() -> Component:
    """The recipe of the ambiguity ensemble's teachers (:meth:`TeacherStore.seed_ensemble`)."""
    return component("teacher", "ce")


@dataclasses.dataclass(frozen=True)
class Trained:
    """A trained network, the logits the runner needs, and its post-hoc temperature."""

    model: torch.nn.Module
    logits: dict[str, np.ndarray]  # split name -> (n, C) float32
    card: dict[str, Any]  # TrainResult as a dict (history, best epoch, wall time...)
    temperature: float  # fitted on the clean validation split only


class TeacherStore(Telling):
    """Trains each distinct teacher once and keeps it on disk: weights, logits and training card.

    The key is (task spec, subset, recipe spec, architecture spec, seed, fold,
    number of folds). A teacher's directory is complete when its ``sha256.json``
    (the hash of every file, written last) exists; a directory whose files do
    not match it (a flipped byte, an edit, a torn write) is named in the log
    and retrained, once per run.
    """

    def __init__(self, arch: Architecture, n_folds: int, inputs: Inputs, root: Path | None = None) -> None:
        self.arch, self.n_folds, self.inputs = arch, n_folds, inputs
        self.root = root or cache_dir() / numerics.cache_name("teachers")
        self.trained: collections.Counter[str] = collections.Counter()
        self.reused: collections.Counter[str] = collections.Counter()
        self.rebuilt: list[str] = []  # cache entries that failed their check and were retrained
        self._memo: dict[str, Trained] = {}
        self._shift_memo: dict[tuple[str, str], dict[str, Any]] = {}

    def key(self, data: TaskData, recipe: Component, seed: int, fold: int | None) -> str:
        parts = {
            "v": TEACHER_CACHE_VERSION,
            "task": data.spec.spec_hash(),
            "subset": data.subset,
            "recipe": recipe.spec_hash(),
            "arch": self.arch.spec.spec_hash(),
            "seed": seed,
            "fold": fold,
            "n_folds": self.n_folds if fold is not None else None,
        }
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
        return f"{data.spec.name}-{recipe.name}-s{seed}-{'full' if fold is None else f'f{fold}'}-{digest}"

    def full(self, data: TaskData, recipe: Component, seed: int) -> Trained:
        """The teacher trained on the whole training split: it labels (in-sample) and is scored."""
        return self._get(data, recipe, seed, None)

    def get(self, data: TaskData, recipe: Component, seed: int, fold: int | None) -> Trained:
        """One teacher (``fold`` None: the full-data one), loaded or trained now: the unit an executor schedules."""
        return self._get(data, recipe, seed, fold)

    def out_of_fold(self, data: TaskData, recipe: Component, seed: int) -> np.ndarray:
        """Cross-fitted logits on the training split: each fold labelled by a teacher that never saw it."""
        oof = np.zeros((len(data.train.labels), data.num_classes), dtype=np.float32)
        for fold, held in enumerate(self.folds(data, seed)):
            oof[held] = self._get(data, recipe, seed, fold).logits["heldout"]
        return oof

    def fold_validation(self, data: TaskData, recipe: Component, seed: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        """For each fold teacher: the training rows it labels and its own validation logits."""
        return tuple(
            (held, self._get(data, recipe, seed, fold).logits["validation"]) for fold, held in enumerate(self.folds(data, seed))
        )

    def folds(self, data: TaskData, seed: int) -> list[np.ndarray]:
        """Stratified folds of the training split: within each class, a seeded permutation dealt round-robin."""
        rng = np.random.default_rng(derive_seed("folds", data.spec.name, data.subset, seed))
        assignment = np.empty(len(data.train.labels), dtype=np.int64)
        for c in np.unique(data.train.labels):
            members = np.flatnonzero(data.train.labels == c)
            assignment[members[rng.permutation(len(members))]] = np.arange(len(members)) % self.n_folds
        return [np.flatnonzero(assignment == k) for k in range(self.n_folds)]

    def shift_scores(self, data: TaskData, recipe: Component, seed: int, shift_sets: ShiftSets) -> dict[str, Any]:
        """The full-data teacher's scores on every shifted set (computed once per teacher and run)."""
        key = ("shifts", self.key(data, recipe, seed, None))
        if key not in self._shift_memo:
            teacher = self.full(data, recipe, seed)
            self._shift_memo[key] = shift_sets.score(self.arch, teacher.model, teacher.logits["test"], teacher.temperature, self.inputs)[0]
        return self._shift_memo[key]

    def seed_ensemble(self, data: TaskData, seeds: tuple[int, ...]) -> TeacherProbs:
        """The CE teachers' test probabilities for every seed (for model-defined ambiguity).

        The runner passes the suite's ``ensemble_seeds``, which no suite shares with its
        training seeds: these teachers are never the ones a method distils."""
        ce = ensemble_recipe()
        return TeacherProbs(
            data.test.ids,
            tuple(calibration.apply_temperature(self.full(data, ce, seed).logits["test"], 1.0) for seed in seeds),
        )

    def _get(self, data: TaskData, recipe: Component, seed: int, fold: int | None) -> Trained:
        key = self.key(data, recipe, seed, fold)
        if key in self._memo:
            return self._memo[key]
        folder = self.root / key
        loaded = self._load(folder, data)
        if loaded is None:
            self.tell(f"training teacher {recipe.name} seed {seed} " + ("full data" if fold is None else f"fold {fold + 1}/{self.n_folds}"))
            loaded = self._train(folder, data, recipe, seed, fold)
            self.trained[recipe.name] += 1
        else:
            self.reused[recipe.name] += 1
        model, logits, card = loaded
        T = calibration.fit_temperature(logits["validation"], data.validation.labels, split="validation")
        self._memo[key] = Trained(model, logits, card, T)
        return self._memo[key]

    def _train(self, folder: Path, data: TaskData, recipe: Component, seed: int, fold: int | None) -> tuple:
        n = len(data.train.labels)
        if fold is None:
            train_idx, held = np.arange(n), None
        else:
            held = self.folds(data, seed)[fold]
            train_idx = np.setdiff1d(np.arange(n), held)
        t_seed = derive_seed("teacher", seed, fold)
        model, card = fit(self.arch, data, train_idx, recipe.build(), t_seed, self.inputs)
        logits = {"validation": predict_logits(self.arch, model, self.inputs(self.arch, data.validation.texts))}
        if fold is None:
            logits["train"] = predict_logits(self.arch, model, self.inputs(self.arch, data.train.texts))
            logits["test"] = predict_logits(self.arch, model, self.inputs(self.arch, data.test.texts))
        else:
            logits["heldout"] = predict_logits(self.arch, model, self.inputs(self.arch, tuple(data.train.texts[i] for i in held)))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST).unlink(missing_ok=True)  # incomplete until the new one is written
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        with atomic_path(folder / "model.safetensors") as tmp:
            save_file(state, str(tmp))
        with atomic_path(folder / "logits.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **logits)
        write_json_atomic(folder / "card.json", card)
        write_manifest(folder)  # last: marks the teacher complete
        return model, logits, card

    def _load(self, folder: Path, data: TaskData) -> tuple | None:
        if not folder.is_dir():
            return None
        problems = manifest_problems(folder)
        if problems:
            log.warning("teacher cache %s fails its check (%s); retraining it", folder, "; ".join(problems))
            self.rebuilt.append(str(folder))
            count_rebuilt("teacher")
            return None
        try:
            card = json.loads((folder / "card.json").read_text())
            with np.load(folder / "logits.npz", allow_pickle=False) as z:
                logits = {k: z[k] for k in z.files}
            model = self.arch.build(data.num_classes, 0)
            model.load_state_dict(load_file(str(folder / "model.safetensors")))
        except Exception as exc:  # a damaged cache entry is rebuilt, never trusted
            log.warning("teacher cache %s is unreadable (%s); retraining it", folder, exc)
            self.rebuilt.append(str(folder))
            count_rebuilt("teacher")
            return None
        return model, logits, card
