"""Greedy ensemble selection on validation predictions: Miech, Laptev & Sivic 2017, "Learnable pooling with
Context Gating for video classification" (arXiv 1706.06905) §8 and Figure 3.

Start from the candidate with the best GAP; then, step after step, add the candidate whose addition gives the
averaged probabilities the highest GAP, a model already chosen included (selection with replacement: picking a
model again raises its share of the average), until no candidate raises the GAP or ``max_models`` picks are made.
The ensemble after ``m`` picks scores ``Σ_j c_j p_j / m`` where ``c_j`` counts the picks of candidate ``j``: these
counts are the weights an :class:`~videopool.models.ensemble.EnsembleClassifier` built from the selection uses.
``replacement=False`` picks each candidate at most once (equal weights).

GAP of an average needs every class's score of every video (a class outside each model's top 20 may enter the
average's), so each candidate's predictions are kept in full: float16 ``[videos, classes]`` with the video ids and
the labels (bit-packed), one ``.npz`` per candidate in a cache folder, keyed by the checkpoint's bytes, the data
files (path, size, modification time) and the frame settings, so a second selection over the same runs and data
reads them instead of running the models. At ``V = 3,862`` that is 7.7 MB per 1,000 videos per candidate.
A candidate's predictions are computed as the one-member ensemble it will be inside the built model (its own frame
count, see :mod:`videopool.models.ensemble`), so the selection's GAP is the built ensemble's, up to float16
rounding of the cached probabilities.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from videopool.core.errors import UserError
from videopool.core.files import atomic_write
from videopool.data.loader import expand_patterns, make_loader
from videopool.metrics import gap_at_k
from videopool.models.checkpoint import data_checksum, find_checkpoint, load_model, read_info
from videopool.models.ensemble import EnsembleClassifier, EnsembleConfig, EnsembleMember, trained_frame_count
from videopool.inference.predict import inference_num_frames, run_inference

CACHE_FORMAT = "videopool-predictions-1"
MEMBER_FRAMES = ("all", "trained")  # a member sees every frame, or its training frame count (uniform subsample)


@dataclass(frozen=True)
class FrameSettings:
    """How the candidates see the validation videos (all of it is part of the cache key): the loader's
    ``sampling``, ``num_frames`` (None: the default of :func:`~videopool.inference.inference_num_frames`) and
    ``seed``, the inference ``precision`` (fp32 or bf16), ``member_frames`` (:data:`MEMBER_FRAMES`), and
    ``options``: any further setting the caller's loader applies (test-time samples, record layout, ...)."""

    sampling: str = "all"
    num_frames: int | None = None
    seed: int = 0
    precision: str = "fp32"
    member_frames: str = "all"
    options: tuple[tuple[str, Any], ...] = ()

    def key(self) -> dict[str, Any]:
        return {"sampling": self.sampling, "num_frames": self.num_frames, "seed": self.seed,
                "precision": self.precision, "member_frames": self.member_frames, "options": list(self.options)}


# (checkpoint info with train_config.num_frames set to the loader's frame count) -> (loader, frames per video);
# the command line passes the loader `evaluate` builds, so a selection reads the data exactly as evaluate does.
LoaderFactory = Callable[[dict], tuple[Any, int]]


@dataclass
class Predictions:
    """One candidate's full validation probabilities (float16 ``[n, V]``), the video ids and labels (bool)."""

    path: str
    ids: np.ndarray
    probabilities: np.ndarray
    labels: np.ndarray
    num_frames: int | None
    cache_file: str
    computed: bool
    sha256: str = ""  # of the checkpoint's tensor data, as scored


@dataclass
class Selection:
    """``picks``: candidate indices in the order chosen (repeats allowed); ``curve[m]``: GAP of the average of
    the first ``m + 1`` picks; ``single_gaps``: each candidate alone; ``stop``: why the selection ended."""

    picks: list[int]
    curve: list[float]
    single_gaps: list[float]
    stop: str
    counts: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counts = {}
        for index in self.picks:
            self.counts[index] = self.counts.get(index, 0) + 1


def greedy_select(probabilities: Sequence[np.ndarray], labels: np.ndarray, *, max_models: int | None = None,
                  replacement: bool = True, top_k: int = 20) -> Selection:
    """Greedy selection (module docstring) over the candidates' probability matrices ``[n, V]`` (aligned rows)."""
    if not probabilities:
        raise ValueError("greedy selection needs at least one candidate")
    if max_models is not None and max_models < 1:
        raise ValueError(f"max_models must be at least 1, got {max_models}")
    # The candidates stay as given (float16 from the cache: n · V · 2 bytes each); only the running sum is float32.
    scores = list(probabilities)
    singles = [gap_at_k(np.asarray(p, dtype=np.float32), labels, top_k) for p in scores]
    first = int(np.argmax(singles))  # the first of equals: the candidates' order decides ties
    picks, curve, total = [first], [singles[first]], np.asarray(scores[first], dtype=np.float32).copy()
    while True:
        if max_models is not None and len(picks) >= max_models:
            return Selection(picks, curve, singles, "max_models")
        allowed = [j for j in range(len(scores)) if replacement or j not in picks]
        if not allowed:
            return Selection(picks, curve, singles, "no candidate left")
        trials = [gap_at_k((total + scores[j]) / (len(picks) + 1), labels, top_k) for j in allowed]
        best = int(np.argmax(trials))
        if trials[best] <= curve[-1]:
            return Selection(picks, curve, singles, "no candidate raises the GAP")
        picks.append(allowed[best])
        curve.append(trials[best])
        total += scores[allowed[best]]


def data_fingerprint(patterns: Sequence[str]) -> list[list[Any]]:
    """``[absolute path, size, modification time in ns]`` of each file the data patterns match, so a file added,
    replaced or rewritten changes the cache key (a pattern that matches no local file, a remote URL, is keyed by
    its text alone)."""
    out = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern)))
        if not matches:
            out.append([pattern])
        for path in matches:
            status = os.stat(path)
            out.append([os.path.abspath(path), status.st_size, status.st_mtime_ns])
    return out


def cache_key(checkpoint_sha256: str, fingerprint: list, settings: FrameSettings, member_frames: int | None,
              loader_frames: int) -> str:
    text = json.dumps({"format": CACHE_FORMAT, "checkpoint": checkpoint_sha256, "data": fingerprint,
                       "settings": settings.key(), "member_num_frames": member_frames,
                       "loader_num_frames": loader_frames}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def candidate_predictions(runs: Sequence[str], data: Sequence[str], cache_dir: str, settings: FrameSettings, *,
                          loader_factory: LoaderFactory | None = None, batch_size: int = 256,
                          device: str | torch.device = "cpu", workers: int | None = None, compile: bool = False,
                          progress: bool = True) -> list[Predictions]:
    """Every run's (or checkpoint's) validation predictions over ``data``, read from ``cache_dir`` when present,
    else computed (one inference pass each) and written there; rows aligned on the first candidate's video order.

    ``loader_factory`` builds the loader (default: :func:`~videopool.data.make_loader` with ``settings``,
    ``batch_size`` and ``workers``); it is asked for the largest frame count any candidate trained with, which is
    what the built ensemble's loader serves (``--sampling uniform|random``; the built ensemble asks for the largest
    count among its members, so pass the same ``--num-frames`` to both for identical frames)."""
    expand_patterns(list(data), "--data")
    fingerprint = data_fingerprint(data)
    paths = [os.path.abspath(find_checkpoint(run)) for run in runs]
    infos = [read_info(path) for path in paths]
    counts = [trained_frame_count(info) if settings.member_frames == "trained" else None for info in infos]
    largest = max((c for c in counts if c is not None), default=None)
    loader_frames = inference_num_frames(settings.sampling, settings.num_frames, largest)
    if loader_factory is None:
        loader_factory = _default_loader_factory(data, settings, batch_size, workers, device)
    found = []
    for path, info, count in zip(paths, infos, counts):
        checksum = data_checksum(path)
        key = cache_key(checksum, fingerprint, settings, count, loader_frames)
        cache_file = os.path.join(cache_dir, f"{key}.npz")
        if os.path.isfile(cache_file):
            ids, probabilities, labels = read_cache(cache_file)
            found.append(Predictions(path, ids, probabilities, labels, count, cache_file, False, checksum))
            continue
        train = {**(info.get("train_config") or {}), "num_frames": largest}
        loader, num_frames = loader_factory({**info, "train_config": train})
        ids, probabilities, labels = compute_probabilities(path, loader, count, settings.precision, device=device,
                                                           compile=compile, num_frames=num_frames,
                                                           progress=progress)
        write_cache(cache_file, ids, probabilities, labels)
        found.append(Predictions(path, ids, probabilities, labels, count, cache_file, True, checksum))
    return align(found)


def _default_loader_factory(data: Sequence[str], settings: FrameSettings, batch_size: int, workers: int | None,
                            device) -> LoaderFactory:
    def build(info: dict) -> tuple[Any, int]:
        num_frames = inference_num_frames(settings.sampling, settings.num_frames, info["train_config"]["num_frames"])
        loader = make_loader(list(data), num_classes=int(info["num_classes"]), batch_size=batch_size,
                             strategy=settings.sampling, num_frames=num_frames, shuffle=False, seed=settings.seed,
                             workers=workers, device=device, what="--data",
                             features=(info.get("model_config") or {}).get("modalities"), trainable=False)
        return loader, num_frames

    return build


def compute_probabilities(path: str, loader, member_frames: int | None, precision: str = "fp32", *,
                          device: str | torch.device = "cpu", compile: bool = False, num_frames: int | None = None,
                          progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids, float16 probabilities [n, V], bool labels [n, V])`` of the checkpoint ``path`` over ``loader``, as a
    one-member ensemble seeing ``member_frames`` frames per video (through the one inference path)."""
    from tqdm.auto import tqdm

    model, _ = load_model(path, device)
    if isinstance(model, EnsembleClassifier):
        raise UserError(f"{path!r} is an ensemble; select among the runs it was built from")
    member = EnsembleClassifier(EnsembleConfig([EnsembleMember(model.config, 1.0, member_frames, path)]))
    member.members[0] = model
    ids, probabilities, labels = [], [], []
    bar = tqdm(desc=f"predict {run_name(path)}", unit="video", disable=not progress)
    for batch_ids, scores, truth in run_inference(member.eval(), loader, precision=precision, device=device,
                                                  compile=compile, num_frames=num_frames):
        ids += batch_ids
        probabilities.append(scores.numpy().astype(np.float16))
        labels.append(truth.numpy() > 0)
        bar.update(len(batch_ids))
    bar.close()
    if not ids:
        raise UserError("--data holds no readable video to select an ensemble on")
    return np.array(ids), np.concatenate(probabilities), np.concatenate(labels)


def run_name(path: str) -> str:
    """A checkpoint's short name: its run directory for best/last, ``run/step-N`` for a step checkpoint, else the
    file's stem."""
    folder, base = os.path.split(os.path.abspath(path))
    stem = base.rsplit(".", 1)[0]
    if base in ("best.safetensors", "last.safetensors"):
        return os.path.basename(folder)
    if os.path.basename(folder) == "checkpoints":
        return f"{os.path.basename(os.path.dirname(folder))}/{stem}"
    return stem


def write_cache(path: str, ids: np.ndarray, probabilities: np.ndarray, labels: np.ndarray) -> None:
    """One candidate's predictions as an uncompressed ``.npz`` (written atomically): ``probabilities`` float16
    ``[n, V]``, ``ids`` ``[n]``, ``labels`` bit-packed along the classes (``np.packbits``)."""
    with atomic_write(path, "wb") as handle:
        np.savez(handle, format=np.array(CACHE_FORMAT), ids=ids, probabilities=probabilities.astype(np.float16),
                 labels=np.packbits(labels, axis=1), num_classes=np.array(labels.shape[1]))


def read_cache(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        if str(data["format"]) != CACHE_FORMAT:
            raise ValueError(f"{path!r} is not a videopool prediction cache ({CACHE_FORMAT}); delete it")
        num_classes = int(data["num_classes"])
        labels = np.unpackbits(data["labels"], axis=1, count=num_classes).astype(bool)
        return data["ids"], data["probabilities"], labels


def align(found: list[Predictions]) -> list[Predictions]:
    """Reorder every candidate's rows to the first one's video order; refuse candidates that did not see the same
    videos or the same labels (different --on-bad-record outcomes, a different label space)."""
    reference = found[0]
    if len(set(reference.ids.tolist())) != len(reference.ids):
        raise UserError("--data holds the same video id more than once; the candidates' rows cannot be matched")
    position = {video: i for i, video in enumerate(reference.ids.tolist())}
    for item in found[1:]:
        if item.probabilities.shape[1] != reference.probabilities.shape[1]:
            raise UserError(f"{item.path} predicts {item.probabilities.shape[1]} classes and {reference.path} "
                            f"{reference.probabilities.shape[1]}: only one label space can be ensembled")
        if sorted(item.ids.tolist()) != sorted(position):
            raise UserError(f"{item.path} and {reference.path} were scored on different videos of --data")
        order = np.argsort([position[video] for video in item.ids.tolist()], kind="stable")
        item.ids, item.probabilities, item.labels = item.ids[order], item.probabilities[order], item.labels[order]
        if not np.array_equal(item.labels, reference.labels):
            raise UserError(f"{item.path} and {reference.path} read different labels from --data")
    return found


def bytes_per_thousand_videos(found: Sequence[Predictions]) -> float:
    """Measured cache size per candidate and 1,000 videos (mean over the candidates' files)."""
    sizes = [os.path.getsize(item.cache_file) / len(item.ids) * 1000 for item in found]
    return float(np.mean(sizes))


def format_curve(selection: Selection, names: Sequence[str]) -> str:
    """The GAP curve as a table: number of models, the model added, the ensemble's GAP and the gain."""
    width = max(len("model added"), *(len(name) for name in names))
    lines = [f"{'models':>6}  {'model added':<{width}}  {'GAP@20':>8}  {'gain':>8}"]
    for m, (index, gap) in enumerate(zip(selection.picks, selection.curve)):
        gain = "" if m == 0 else f"{gap - selection.curve[m - 1]:+.5f}"
        lines.append(f"{m + 1:>6}  {names[index]:<{width}}  {gap:>8.5f}  {gain:>8}")
    return "\n".join(lines)


def plot_curve(selection: Selection, names: Sequence[str], path: str, title: str = "") -> str:
    """GAP (%) against the number of models in the ensemble, each point labelled with the model it adds (the
    layout of Figure 3 of arXiv 1706.06905); written atomically as PNG."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.0), dpi=120)
    axes = figure.subplots()
    x = np.arange(1, len(selection.curve) + 1)
    y = 100 * np.asarray(selection.curve)
    axes.plot(x, y, marker="o", color="tab:blue")
    for m, (xi, yi, index) in enumerate(zip(x, y, selection.picks)):
        axes.annotate(("+ " if m else "") + names[index], (xi, yi), textcoords="offset points", xytext=(4, -12),
                      fontsize=7)
    best_single = 100 * max(selection.single_gaps)
    axes.axhline(best_single, color="gray", linestyle=":", linewidth=1, label=f"best single model {best_single:.2f}")
    axes.set_xlabel("number of models in the ensemble")
    axes.set_ylabel("GAP@20 (%)")
    axes.set_xticks(x)
    axes.set_xlim(0.7, len(x) + 1.3)  # room for the last label
    span = max(y.max() - y.min(), 0.5)
    axes.set_ylim(y.min() - 0.25 * span, y.max() + 0.2 * span)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    axes.set_title(title or "greedy ensemble selection", fontsize=10)
    figure.tight_layout()
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png")
    return path
