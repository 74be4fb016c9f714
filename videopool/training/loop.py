"""The training loop: ``train_one_epoch``, ``evaluate`` and ``train`` (the entry point).

Read it top to bottom like torchvision's reference ``train.py``: build the model and the
optimizer, then alternate epochs of training with validation and checkpoints. One step:

    lr    = base · decay ^ floor(examples_seen / decay_examples)
    p     = model(frames, mask)                    (bf16 compute when precision is bf16)
    loss  = BCE(p, y) + regularization_penalty · model.regularization_loss()
    loss.backward(); clip (per tensor or global); Adam

Under ``torchrun`` every rank reads its own shard of the data, all ranks take the same
number of steps (the epoch ends at the shortest shard), rank 0 alone writes logs and
checkpoints, and validation metrics are merged exactly from every rank's evaluator.

No work is lost or stuck (docs/reliability.md, section 1): rank 0 holds ``RUN/.lock`` for the whole run; a
checkpoint is the step's weights, then its resume state (the commit point), then the ``best``/``last`` links;
the checkpoint of a validation step is written *before* validation runs, and the resume state says whether
that validation finished, so a failed or killed validation is redone by ``--resume``; a full disk anywhere is one
:class:`~videopool.core.files.DiskFullError` naming the file and the intact checkpoint.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from videopool.core.distributed import all_ranks_have_data, gather_objects, init_distributed, shutdown_distributed
from videopool.core.files import DiskFullError, atomic_path, is_disk_full, link_atomically, remove_temporaries
from videopool.core.malloc import tune_malloc
from videopool.core.precision import autocast, resolve_device, resolve_precision
from videopool.core.rng import rng_state, seed_everything, set_rng_state
from videopool.data.loader import expand_patterns, make_loader, resolve_workers, set_loader_epoch
from videopool.data.layouts import resolve_layout
from videopool.data.preflight import check_shards
from videopool.inference import evaluate, inference_num_frames
from videopool.models import checkpoint as ckpt
from videopool.models import create_model
from videopool.training.bad_records import BadRecordLog
from videopool.training.data_check import override_for_features
from videopool.training.batch_norm import batch_norm_layers, recompute_batch_norm
from videopool.training.config import TrainConfig, save_yaml
from videopool.training.optim import staircase_learning_rate
from videopool.training.resume import (data_pass, newest_complete_state, newest_step_on_disk, position_payload,
                                       resume_exclusion, save_resume, step_resume_path, step_weights_path)
from videopool.training.run_lock import RunLock
from videopool.training.run_log import RunLogger
from videopool.training.step import NonFiniteLossError, TrainStep, prepare_bf16
from videopool.training.weight_averaging import WeightAveraging


@dataclass
class TrainState:
    step: int = 0
    examples_seen: int = 0
    epoch: int = 0
    batches_done_in_epoch: int = 0  # lets --resume skip what this epoch already trained on
    best_gap: float = -math.inf
    last_saved_step: int = -1
    best_step: int = -1  # the step best.safetensors links to (linked before this state records it)
    validated_step: int = -1  # the last step whose validation finished
    pending_validation: bool = False  # saved before its validation, which --resume then runs first


class ValidationFailedError(RuntimeError):
    """Validation raised (bad validation data, out of memory, ...); the step's checkpoint was written before it,
    so ``--resume`` continues from there. The original error is ``__cause__`` (and ``cause``)."""

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause


class Trainer:
    """Everything one run needs, built once by :func:`train`."""

    selection_metric = "gap"  # the validation metric best.safetensors maximises

    def __init__(self, config: TrainConfig, num_classes: int, resume: bool = False) -> None:
        tune_malloc()  # before the model's first big allocation
        self.config = config
        self.num_classes = num_classes
        self.ctx, self.device = init_distributed(resolve_device(config.device))
        self.precision = resolve_precision(config.precision, self.device)
        self.workers = resolve_workers(config.workers, self.device)
        self.state = TrainState()
        self.run_dir = config.out
        self.complete_step = -1  # the newest step whose checkpoint is complete (weights + resume state)
        self.lock: RunLock | None = None
        self.logger: RunLogger | None = None
        try:
            with self._disk_full_note():
                if self.ctx.is_main:
                    self.lock = RunLock(self.run_dir).acquire()  # before anything in RUN is read or written
                    for folder in (self.run_dir, os.path.join(self.run_dir, "checkpoints")):
                        remove_temporaries(folder, all_processes=True)  # left by killed runs; the lock makes them ours
                self._setup(resume)
        except BaseException:
            self.close()
            raise

    def _setup(self, resume: bool) -> None:
        config, num_classes = self.config, self.num_classes
        seed_everything(config.seed)

        self.model = self.build_model()
        resume_state = self._load_resume() if resume else None
        if config.init_from and resume_state is None:  # train --init-from: another run's weights, fresh optimizer
            ckpt.load_weights_into(self.model, ckpt.find_checkpoint(config.init_from))
        self.model.to(self.device).train()
        master = prepare_bf16(self.model, self.precision, config.bf16_scheme, config.bf16_master_min_numel)
        module = self.model
        if self.ctx.enabled:
            module = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.step_fn = TrainStep(
            module, precision=self.precision, device=self.device, learning_rate=config.learning_rate, master=master,
            clip_gradient_norm=config.clip_gradient_norm, clip_mode=config.clip_mode, loss=config.loss,
            regularization_penalty=config.regularization_penalty, adam_betas=tuple(config.adam_betas),
            adam_epsilon=config.adam_epsilon)
        self.optimizer = self.step_fn.optimizer
        self.averaging = None  # weight_averaging: ema | swa (videopool.training.weight_averaging)
        if config.weight_averaging != "none":
            self.averaging = WeightAveraging(self.model, config.weight_averaging, ema_decay=config.ema_decay,
                                             swa_start=config.swa_start, master=master)
            if resume_state is not None and "averaging" in resume_state:
                self.averaging.load_state_dict(resume_state["averaging"], resume_state["step_weights"])
        self.pending_rng = None  # restored once the data iterator exists (see train_one_epoch)
        if resume_state is not None:
            self.optimizer.load_state_dict(resume_state["optimizer"])
            rng = resume_state["rng"]
            self.pending_rng = rng[self.ctx.rank % len(rng)]
        # Resumed on another world size or worker count: the epoch's rest is every video not yet trained on.
        self.epoch_exclude = resume_exclusion(resume_state, data_pass(self.ctx.world_size, self.workers, False))
        self.epoch_ids: list[str] = []  # the ids this rank trained on in this epoch's pass (for the above)
        self.last_lr = config.learning_rate
        self.last_ids: list[str] = []
        self.last_metrics: dict[str, Any] | None = None
        self.last_validated_step = self.state.validated_step
        self._resume_payload: dict[str, Any] | None = None
        self.logger = RunLogger(self.run_dir, enabled=self.ctx.is_main, start_step=self.state.step,
                                validated=not self.state.pending_validation)
        if self.ctx.is_main:
            os.makedirs(os.path.join(self.run_dir, "checkpoints"), exist_ok=True)
            with atomic_path(os.path.join(self.run_dir, "config.yaml")) as tmp:
                save_yaml(config, tmp,
                          {"resolved": {"precision": self.precision, "device": str(self.device),
                                        "workers": self.workers, "num_classes": num_classes,
                                        "world_size": self.ctx.world_size}})

    def build_model(self) -> nn.Module:
        """The model to train, with its initial weights (a subclass may start from another run's)."""
        return create_model(self.config.model, num_classes=self.num_classes, **self.config.model_overrides)

    # --- checkpoints -------------------------------------------------------------

    def _load_resume(self) -> dict[str, Any] | None:
        """The newest complete step's state (weights loaded into the model), or None to start from step 0."""
        found = newest_complete_state(self.run_dir)
        if found is None:
            if self.ctx.is_main:
                warnings.warn(f"resume: {self.run_dir!r} holds no complete checkpoint yet (killed during the first "
                              "one?); starting from step 0", stacklevel=3)
            return None
        resume_state, weights, path = found
        ckpt.load_weights_into(self.model, path, weights)
        if "trained_weights" in resume_state:  # weight averaging: the step file holds the average, this the model
            self.model.load_state_dict(resume_state["trained_weights"], strict=True)
            resume_state["step_weights"] = weights
        self.state = TrainState(**resume_state["state"])
        self.complete_step = self.state.step
        if self.ctx.is_main:
            self._repair_best_link()
        return resume_state

    def _repair_best_link(self) -> None:
        # best is linked before the state that records it, so it can only be newer, never older than recorded;
        # a run directory written before that rule may still hold an older best: link the recorded one.
        recorded = self.state.best_step
        best = os.path.join(self.run_dir, "best.safetensors")
        weights = step_weights_path(self.run_dir, recorded)
        if recorded < 0 or not os.path.isfile(weights):
            return
        if not os.path.isfile(best) or (ckpt.read_info(best).get("step") or -1) < recorded:
            link_atomically(weights, best)

    def info(self, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "format": "videopool-checkpoint-1",
            "model_config": self.model.config.to_dict(),
            "train_config": self.config.to_dict(),
            "num_classes": self.num_classes,
            "feature_names": list(self.model.config.modalities),
            "step": self.state.step,
            "examples_seen": self.state.examples_seen,
            "epoch": self.state.epoch,
            "metrics": {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float))},
        }

    def save(self, best: bool = False, metrics: dict[str, Any] | None = None, rewrite_weights: bool = False) -> None:
        """Write the checkpoint of this step; rank 0 writes, all ranks gather RNG.

        Order (each file atomic): ``checkpoints/step-N.safetensors`` (skipped when this step's weights are already
        written), then ``best`` when this step is the new best, then ``checkpoints/step-N.resume.pt`` — the commit
        point: from here ``--resume`` continues from step N —, then the ``last`` and ``resume.pt`` links, then the
        pruning of old steps. A kill anywhere leaves the previous complete step, and ``best`` is never older than
        the best step a resume state records. ``rewrite_weights``: write the weights even when this step's are on
        disk already (precise BN changed them since)."""
        self._check_finite_weights()
        rng = gather_objects(rng_state(), self.ctx)
        epoch_ids = gather_objects(self.epoch_ids if self.state.batches_done_in_epoch else [], self.ctx)
        if not self.ctx.is_main:
            return
        step = self.state.step
        step_path = step_weights_path(self.run_dir, step)
        with self._disk_full_note():
            if rewrite_weights or self.state.last_saved_step != step or not os.path.exists(step_path):
                model = self.eval_model()  # the weight average, when there is one
                weights = self.step_fn.state_dict_fp32() if model is self.model else model.state_dict()
                ckpt.save_weights(step_path, weights, self.info(metrics))
                self.state.last_saved_step = step
            if best:
                link_atomically(step_path, os.path.join(self.run_dir, "best.safetensors"))
            self._resume_payload = {"state": None, "optimizer": self.optimizer.state_dict(), "rng": rng,
                                    **position_payload(self.state.batches_done_in_epoch, self.pass_info(),
                                                       epoch_ids, self.epoch_exclude)}
            if self.averaging is not None:  # the trained weights, which the step file does not hold then
                self._resume_payload.update(averaging=self.averaging.state_dict(),
                                            trained_weights=self.step_fn.state_dict_fp32())
            self._commit()

    def eval_model(self) -> nn.Module:
        """What validation, precise BN and the checkpoints see: the weight average once it holds a step, else the
        trained model."""
        return self.averaging.model if self.averaging is not None and self.averaging.active else self.model

    def _commit(self) -> None:
        """Write the resume state of this step (its weights are on disk) and point ``last``/``resume.pt`` at it."""
        step = self.state.step
        payload = {**self._resume_payload, "state": vars(self.state).copy()}
        save_resume(step_resume_path(self.run_dir, step), payload)
        self.complete_step = step
        link_atomically(step_weights_path(self.run_dir, step), os.path.join(self.run_dir, "last.safetensors"))
        link_atomically(step_resume_path(self.run_dir, step), os.path.join(self.run_dir, "resume.pt"))
        self._prune_step_files()

    @contextlib.contextmanager
    def _disk_full_note(self):
        """Turn a full disk into one :class:`DiskFullError` that names the file and the intact checkpoint."""
        try:
            yield
        except Exception as err:
            if not is_disk_full(err) or (isinstance(err, DiskFullError) and err.note):
                raise
            path = err.path if isinstance(err, DiskFullError) else (getattr(err, "filename", None) or self.run_dir)
            raise DiskFullError(os.fspath(path), self._intact_note()) from None

    def _intact_note(self) -> str:
        resume = f"free some space and continue with `videopool train --out {self.run_dir} --resume`"
        step = self.complete_step if self.complete_step >= 0 else newest_step_on_disk(self.run_dir)
        if step >= 0:
            return f"previous checkpoint at step {step} is intact ({step_weights_path(self.run_dir, step)}); {resume}"
        if os.path.isfile(os.path.join(self.run_dir, "config.yaml")):
            return f"no checkpoint had been written yet; {resume} (it starts again from step 0)"
        return "no checkpoint had been written yet; free some space and start the run again"

    def _check_finite_weights(self) -> None:
        # A huge step can overflow a weight while the ε-guarded loss stays finite; never save that.
        for name, tensor in self.step_fn.state_dict_fp32().items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise NonFiniteLossError(self._nan_message(f"weight {name!r} became non-finite", self.last_ids,
                                                            self.state.step))

    def _prune_step_files(self) -> None:
        keep = self.config.keep_checkpoints
        if keep <= 0:
            return
        steps = [step for step, _ in ckpt.step_checkpoints(os.path.join(self.run_dir, "checkpoints"))]
        for step in steps[:-keep]:
            # the resume state first: a step is complete only while both files exist. last/best/resume.pt are
            # hard links and survive.
            for path in (step_resume_path(self.run_dir, step), step_weights_path(self.run_dir, step)):
                if os.path.exists(path):
                    os.unlink(path)

    # --- loop --------------------------------------------------------------------

    def check_data(self) -> None:
        """Before the first step: every shard of --train-data and --val-data against the model (kind, feature
        sizes, a sampled record's labels and their range; :func:`~videopool.data.preflight.check_shards`), so a
        wrong --val-data fails in seconds rather than after an epoch. Sets the decode schema of both."""
        c = self.config
        self.bad_records = BadRecordLog(self.run_dir, self.ctx.rank, fresh=self.state.step == 0)
        self.data_schemas = {}
        for data, patterns, what in (("train", c.train_data, "--train-data"), ("val", c.val_data, "--val-data")):
            if not patterns:
                continue
            check = check_shards(expand_patterns(patterns, what), features=self.model.config.modalities,
                                 record_layout=resolve_layout(c.layout),
                                 num_classes=self.num_classes, on_error=c.on_bad_record, what=what,
                                 reads_with=lambda found: override_for_features(c, self.num_classes, found))
            for error in check.bad_records:
                self.bad_records.add(data, error, self.state.epoch, self.state.step)
            if check.checked_records and not check.labelled_records:
                use = "; a test set has none: use `videopool predict` on it" if data == "val" else ""
                raise ValueError(f"{what}: no video has labels (checked the first video of each of its "
                                 f"{len(check.files)} file(s)); {data == 'val' and 'validation' or 'training'} "
                                 f"needs labelled videos{use}")
            self.data_schemas[data] = check.schema

    def _bad_data_options(self, data: str) -> dict[str, Any]:
        """The bad-record arguments of the loaders of ``data`` ("train" or "val")."""
        c = self.config
        if not hasattr(self, "bad_records"):
            self.check_data()

        def listed(error) -> None:
            self.bad_records.add(data, error, self.state.epoch, self.state.step)

        return {"on_bad_record": c.on_bad_record, "max_bad_records": c.max_bad_records, "on_skip": listed,
                "bad_record_log": self.bad_records.path, "features": self.model.config.modalities,
                "schema": self.data_schemas.get(data)}

    def pass_info(self) -> dict[str, Any]:
        return data_pass(self.ctx.world_size, self.workers, self.epoch_exclude is not None)

    def train_loader(self, epoch: int):
        c = self.config
        loader = make_loader(c.train_data, num_classes=self.num_classes, batch_size=c.batch_size,
                             strategy=c.frame_selection, num_frames=c.num_frames, shuffle=True,
                             seed=c.seed, epoch=epoch, workers=self.workers, rank=self.ctx.rank,
                             world_size=self.ctx.world_size, device=self.device, what="--train-data",
                             exclude_ids=self.epoch_exclude, **self._bad_data_options("train"))
        set_loader_epoch(loader, epoch)
        return loader

    def train_step(self, batch) -> float:
        c = self.config
        lr = staircase_learning_rate(c.learning_rate, c.lr_decay, c.lr_decay_examples, self.state.examples_seen)
        batch = batch.to(self.device, non_blocking=True)
        try:
            loss = self.step_fn(batch.frames, batch.mask, self.batch_labels(batch), lr, inputs=self.batch_inputs(batch))
        except NonFiniteLossError as err:
            raise NonFiniteLossError(self._nan_message(str(err), batch.ids, self.state.step + 1)) from None
        self.state.step += 1
        self.state.examples_seen += len(batch) * self.ctx.world_size
        if self.averaging is not None:
            self.averaging.update(self.state.step)
        self.last_lr, self.last_ids = lr, batch.ids
        return float(loss)

    def batch_labels(self, batch):
        """What the loss compares the output with (a subclass may pack label weights with the labels)."""
        return batch.labels

    def batch_inputs(self, batch) -> dict | None:
        """Keyword arguments of the forward besides frames and mask (a segment model's whole video)."""
        return None

    def _nan_message(self, what: str, ids: list[str], step: int) -> str:
        shown = ", ".join(ids[:8]) + (" ..." if len(ids) > 8 else "")
        last = os.path.join(self.run_dir, "last.safetensors")
        kept = (f"the last good checkpoint is {last} (step {self.state.last_saved_step})"
                if self.state.last_saved_step >= 0 else "no checkpoint had been written yet")
        return (f"{what} at step {step} on the batch of videos [{shown}]; "
                f"training stopped and {kept}. Try a lower --lr, --precision fp32, or check these records.")

    def train_one_epoch(self, epoch: int, progress) -> bool:
        """One pass over the training shards; returns False once max_steps is reached."""
        c = self.config
        skip = self.state.batches_done_in_epoch
        if skip == 0:  # a fresh pass: the split of this run, nothing excluded
            self.epoch_exclude, self.epoch_ids = None, []
        elif self.epoch_exclude is not None:
            skip = 0  # the excluded videos are the ones trained on; the re-dealt rest starts at its first batch
        started, seen = time.perf_counter(), 0
        if self.pending_rng is not None and skip == 0:
            # Saved at an epoch boundary: the uninterrupted run creates this epoch's iterator from the saved state.
            set_rng_state(self.pending_rng)
            self.pending_rng = None
        self.last_train_loader = loader = self.train_loader(epoch)
        iterator = iter(loader)
        if self.pending_rng is not None:
            # Saved mid-epoch: creating a DataLoader iterator draws from torch's RNG, which the uninterrupted run
            # did before the save; restore the saved state after it, so dropout etc. continue exactly.
            set_rng_state(self.pending_rng)
            self.pending_rng = None
        index = 0
        while True:
            if c.max_steps is not None and self.state.step >= c.max_steps:
                return False  # e.g. resuming a run that already reached max_steps
            batch = next(iterator, None)
            if not all_ranks_have_data(batch is not None, self.ctx, self.device):
                break
            index += 1
            self.epoch_ids.extend(getattr(batch, "ids", ()))
            if index <= skip:
                continue  # trained on before the run was resumed
            loss = self.train_step(batch)
            self.state.batches_done_in_epoch = index
            seen += len(batch) * self.ctx.world_size
            rate = seen / max(time.perf_counter() - started, 1e-9)
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{loss:.4g}", videos_per_s=f"{rate:.1f}", epoch=epoch)
            if self.state.step % max(c.log_every, 1) == 0 or index == skip + 1:
                self.logger.log("train", self.state.step, {"loss": loss, "lr": self.last_lr,
                                                           "videos_per_s": rate, "epoch": epoch})
            if c.eval_every and self.state.step % c.eval_every == 0:
                self.validate_and_save()
            elif c.checkpoint_every and self.state.step % c.checkpoint_every == 0:
                self.save()
            if c.max_steps is not None and self.state.step >= c.max_steps:
                return False
        return True

    def validate(self) -> dict[str, Any] | None:
        c = self.config
        if not c.val_data:
            return None
        num_frames = inference_num_frames(c.eval_sampling, None, c.num_frames)
        loader = make_loader(c.val_data, num_classes=self.num_classes, batch_size=c.eval_batch_size or c.batch_size,
                             strategy=c.eval_sampling, num_frames=num_frames, shuffle=False, seed=c.seed,
                             workers=self.workers, rank=self.ctx.rank, world_size=self.ctx.world_size,
                             device=self.device, what="--val-data", **self._bad_data_options("val"))
        # fp32 whatever the training precision: the float32 weights the checkpoint stores, scored as `videopool
        # evaluate` (fp32 by default) scores them, so a run's validation GAP and evaluate's are one number.
        return evaluate(self.validation_model(), loader, device=self.device, precision="fp32", loss=c.loss,
                        ctx=self.ctx, num_frames=num_frames)

    def validation_model(self) -> nn.Module:
        """The eval model with float32 weights: itself in fp32 training; in bf16 a float32 copy holding what
        :meth:`save` writes (the fp32 masters, or the weight average)."""
        model = self.eval_model()
        if self.precision != "bf16":
            return model
        import copy

        clone = copy.deepcopy(model).float()
        clone.load_state_dict(self.step_fn.state_dict_fp32() if model is self.model else model.state_dict())
        return clone

    def refresh_batch_norm(self) -> bool:
        """Precise BN before validating/saving (see :mod:`videopool.training.batch_norm`); True when it changed the
        BN statistics (so a checkpoint of this step written before it is out of date)."""
        wanted, model = self.config.bn_recompute_batches, self.eval_model()
        if wanted <= 0 or not batch_norm_layers(model):
            return False
        rng = rng_state()  # the extra loader must not shift the training run's random stream
        batches = itertools.islice(self.train_loader(self.state.epoch + 7919), wanted)

        def forward(batch) -> None:
            batch = batch.to(self.device)
            with autocast(self.device, self.precision):
                model(batch.frames, batch.mask, **(self.batch_inputs(batch) or {}))

        recompute_batch_norm(model, batches, forward)
        if self.ctx.enabled:  # every rank evaluates (and rank 0 saves) the same statistics
            for layer in batch_norm_layers(model):
                torch.distributed.broadcast(layer.running_mean, 0)
                torch.distributed.broadcast(layer.running_var, 0)
        set_rng_state(rng)
        return True

    def validate_and_save(self) -> dict[str, Any] | None:
        """Checkpoint this step, then validate it: an error in validation never costs the training done."""
        refreshed = self.refresh_batch_norm()
        self.state.pending_validation = True
        self.save(rewrite_weights=refreshed)  # the validated model is the saved one, BN statistics included
        return self.finish_validation()

    def finish_validation(self) -> dict[str, Any] | None:
        """Validate the step just checkpointed, log it, link ``best`` if it is the best, and record that in the
        step's resume state (``--resume`` runs this first when the state says the validation did not finish)."""
        step = self.state.step
        rng = rng_state()  # validation must not shift the training run's random stream, so that a resumed run
        try:               # (which may or may not redo it) continues exactly
            metrics = self.validate()
        except Exception as err:
            raise ValidationFailedError(
                f"validation at step {step} failed: {type(err).__name__}: {err}. The training checkpoint of step "
                f"{step} was written before validation ({step_weights_path(self.run_dir, step)}): fix the cause "
                f"and continue with `videopool train --out {self.run_dir} --resume`, which validates step {step} "
                "first", err) from err
        finally:
            set_rng_state(rng)
        self.last_metrics, self.last_validated_step = metrics, step
        best = False
        if metrics is not None:
            scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
            self.logger.log("val", step, scalars)
            best = metrics[self.selection_metric] > self.state.best_gap
            if best:
                self.state.best_gap, self.state.best_step = float(metrics[self.selection_metric]), step
        self.state.pending_validation = False
        self.state.validated_step = step
        if self.ctx.is_main:
            with self._disk_full_note():
                if best:  # before the state that records it as best
                    link_atomically(step_weights_path(self.run_dir, step),
                                    os.path.join(self.run_dir, "best.safetensors"))
                if self._resume_payload is None:  # resumed with the validation pending: reuse the saved state
                    saved = torch.load(step_resume_path(self.run_dir, step), map_location="cpu", weights_only=False)
                    self._resume_payload = {k: v for k, v in saved.items() if k != "state"}
                self._commit()
        return metrics

    def fit(self) -> dict[str, Any]:
        c = self.config
        if c.max_steps is None and c.epochs is None:
            raise ValueError("give --max-steps or --epochs (or both) so training knows when to stop")
        self.check_data()  # every shard, before the first step (and before a pending validation)
        if self.state.pending_validation:  # resumed from a checkpoint whose validation had not finished
            with self._disk_full_note():
                self.finish_validation()
        progress = None
        if self.ctx.is_main and c.progress:
            from tqdm import tqdm

            progress = tqdm(total=c.max_steps, initial=self.state.step, unit="step", dynamic_ncols=True)
        try:
            while c.epochs is None or self.state.epoch < c.epochs:
                more = self.train_one_epoch(self.state.epoch, progress)
                if self.state.step == 0:
                    raise ValueError(self._no_steps_message())
                if not more:
                    break
                if progress is not None and c.epochs is not None and self.state.epoch == 0:
                    # the first epoch tells how many steps an epoch has: now the bar's ETA means something
                    total = self.state.step * c.epochs
                    progress.total = min(total, c.max_steps) if c.max_steps else total
                    progress.refresh()
                self.state.epoch += 1
                self.state.batches_done_in_epoch = 0
                if not c.eval_every:
                    self.validate_and_save()
            if self.last_validated_step != self.state.step:
                self.validate_and_save()
            cut = getattr(getattr(self, "last_train_loader", None), "cut_videos", 0)
            if cut:  # videos longer than the frame cap in the last pass over --train-data (warned once)
                self.logger.log("frame_cap", self.state.step, {"videos_cut": cut,
                                                               "cap": self.last_train_loader.frame_cap})
            bad = self.bad_records.summary()
            if bad["count"]:  # the end-of-run summary of the skipped records (each one is in bad_records.jsonl)
                self.logger.log("bad_records", self.state.step, {
                    "count": bad["count"], "train": bad["train"], "val": bad["val"],
                    **{f"kind_{kind}": n for kind, n in bad["by_kind"].items()}})
        finally:
            if progress is not None:
                progress.close()
            self.logger.close()
        return {"step": self.state.step, "examples_seen": self.state.examples_seen,
                "epoch": self.state.epoch, "metrics": self.last_metrics, "run_dir": self.run_dir,
                "bad_records": bad}

    def _no_steps_message(self) -> str:
        bad = self.bad_records.summary()
        skipped = f"; {bad['train']} bad record(s) skipped, listed in {bad['path']}" if bad["train"] else ""
        return (f"--train-data {' '.join(self.config.train_data)} holds no video to train on{skipped}: training "
                "would run 0 steps and save an untrained model")


    def close(self) -> None:
        """Close the logs and give the run directory's lock back."""
        if self.logger is not None:
            self.logger.close()
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def train(config: TrainConfig, num_classes: int, resume: bool = False) -> dict[str, Any]:
    """Run a whole training job (single process or one torchrun rank) and return a summary.

    A full disk anywhere (checkpoints, logs, TensorBoard, config.yaml) is raised as one
    :class:`~videopool.core.files.DiskFullError`: "disk full while writing X; previous checkpoint at step N is
    intact"."""
    trainer = Trainer(config, num_classes, resume=resume)
    try:
        with trainer._disk_full_note():
            return trainer.fit()
    finally:
        trainer.close()
        shutdown_distributed()
