"""What ``evaluate`` and ``predict`` share: their inference options and the loader they build from them."""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from videopool.cli.arguments import non_negative_int, positive_int

if TYPE_CHECKING:  # torch takes ~1.5 s to import; --help must not wait for it
    import torch


class LazyChoices(Sequence):
    """An argparse ``choices`` list read from the module that defines it only when a value is checked or help is
    printed: every subcommand's parser is built at start-up, and modules that import torch must not be loaded then."""

    def __init__(self, module: str, name: str) -> None:
        self._where = (module, name)

    @functools.cached_property
    def _choices(self) -> tuple[str, ...]:
        module, name = self._where
        return tuple(getattr(importlib.import_module(module), name))

    def __getitem__(self, index):
        return self._choices[index]

    def __len__(self) -> int:
        return len(self._choices)


def add_bad_record_options(p: argparse.ArgumentParser, default: str | None = "error") -> None:
    """``--on-bad-record {error,skip}`` and ``--max-bad-records``: what every command that reads data does with a
    corrupt record (docs/reliability.md, section 2). ``default=None`` leaves the values to the run's config."""
    shown = default or "the run's setting, else error"
    p.add_argument("--on-bad-record", choices=LazyChoices("videopool.data.errors", "BAD_RECORD_POLICIES"),
                   default=default, metavar="{error,skip}",
                   help=f"a corrupt record (CRC, truncation, zero frames, wrong feature size, label out of range): "
                        f"stop with its file, record and byte offset (error), or skip it, count it and list it "
                        f"(skip); default: {shown}")
    p.add_argument("--max-bad-records", type=float, default=None, metavar="N",
                   help="with skip, stop once more than this share of the records read were bad (a fraction below "
                        "1; at least one is tolerated) or more than this many (a whole number >= 1); "
                        "default 0.01 (1%%)")


def skip_reporter(command: str):
    """``on_skip`` for an inference command: each skipped record on its own stderr line."""
    def report(error) -> None:
        print(f"videopool {command}: skipped bad record: {error}", file=sys.stderr)

    return report


def report_skipped(command: str, loader) -> None:
    """The end summary of the records a command's loader skipped and of the videos it cut at the frame cap
    (nothing when there were none)."""
    cut = getattr(loader, "cut_videos", 0)
    if cut:
        print(f"videopool {command}: {cut} video(s) longer than the frame cap of {loader.frame_cap} were read up "
              "to it", file=sys.stderr)
    skipped = getattr(loader, "skipped", None)
    if skipped is not None and skipped.count:
        print(f"videopool {command}: skipped {skipped.count} bad record(s) ({skipped.kinds()}) "
              f"of the {loader.records_read} read", file=sys.stderr)


def add_inference_options(p: argparse.ArgumentParser) -> None:
    """Frame sampling, batch size and the options of :func:`videopool.inference.run_inference`."""
    from videopool.core.precision import PRECISIONS

    p.add_argument("--sampling", choices=LazyChoices("videopool.inference.predict", "EVAL_SAMPLINGS"),
                   default="all", metavar="SAMPLING",
                   help="frames fed to the model (%(choices)s): all real frames with the mask (default, "
                        "deterministic), uniform, or random with replacement as the reference code does at test time")
    p.add_argument("--num-frames", type=positive_int, default=None,
                   help="frames per video (default: the training value)")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32 (default, exact) or bf16 weights (faster where bf16 matmuls are, e.g. AMX or GPU)")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=non_negative_int, default=None,
                   help="data-loading processes (default: 0 on a CPU machine with <= 2 cores, else 1)")
    p.add_argument("--compile", action="store_true",
                   help="run the model through torch.compile: a few seconds to compile, then up to ~15%% faster "
                        "on CPU for large runs (batches are padded to --num-frames)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of --sampling random")
    p.add_argument("--test-time-samples", type=positive_int, default=1, metavar="R",
                   help="with --sampling random: average the predictions of R random samplings of every video "
                        "(sample r is that of --seed SEED+r; each video read once; a batch holds --batch-size // R "
                        "videos); default 1")
    p.add_argument("--layout", metavar="LAYOUT", default=None,
                   help="record layout of --data (yt8m_frame, yt8m_video, audioset, mediapipe or a layout YAML "
                        "file); default: the training run's --layout, else read off the files")
    add_bad_record_options(p)


def inference_loader(args: argparse.Namespace, info: dict[str, Any], device: torch.device):
    """``(loader over --data, frames per video)`` for a checkpoint whose metadata is ``info``."""
    from videopool.data.loader import make_loader
    from videopool.inference.predict import inference_num_frames

    from videopool.data.errors import DEFAULT_MAX_BAD_RECORDS

    num_frames = inference_num_frames(args.sampling, args.num_frames, info.get("train_config", {}).get("num_frames"))
    features = (info.get("model_config") or {}).get("modalities")
    max_bad = DEFAULT_MAX_BAD_RECORDS if args.max_bad_records is None else args.max_bad_records
    samples = getattr(args, "test_time_samples", 1)
    strategy, read_frames, batch_size = args.sampling, num_frames, args.batch_size
    if samples > 1:  # every frame is read once and the R samplings drawn per batch (videopool.inference.resampling)
        from videopool.inference.predict import MAX_FRAMES
        from videopool.inference.resampling import check_test_time_samples

        check_test_time_samples(args.sampling, samples)
        strategy, read_frames, batch_size = "all", MAX_FRAMES, max(1, args.batch_size // samples)
    loader = make_loader(args.data, num_classes=int(info["num_classes"]), batch_size=batch_size,
                         strategy=strategy, num_frames=read_frames, shuffle=False, seed=args.seed,
                         workers=args.workers, device=device, what="--data", on_bad_record=args.on_bad_record,
                         max_bad_records=max_bad, on_skip=skip_reporter(args.command), features=features,
                         trainable=False,
                         layout=getattr(args, "layout", None) or info.get("train_config", {}).get("layout"))
    if samples > 1:
        from videopool.inference.resampling import ResamplingCollate

        loader.collate_fn = ResamplingCollate(samples, num_frames, args.seed, loader.dataset)
    return loader, num_frames
