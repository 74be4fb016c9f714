"""The WILLOW gated NetVLAD (videopool's ``gated_netvlad_256``) in TensorFlow 2, for side-by-side timing only.

Used by ``bench_train.py`` and ``bench_infer.py`` when ``import tensorflow`` succeeds; TensorFlow is never a
dependency of videopool and nothing in the ``videopool`` package imports this file. Run the side-by-side
benchmarks from the repository root with a Python that has both torch and TensorFlow::

    PYTHONPATH=. python benchmarks/bench_train.py --clusters 64 256
    PYTHONPATH=. python benchmarks/bench_infer.py --clusters 64 256
    PYTHONPATH=. python benchmarks/tf_gated_netvlad.py --clusters 16 --num-classes 50   # self-check

The self-check compares the trainable parameter count with videopool's model, and (``--check-outputs``,
default on) copies a torch model's weights into the TF model and compares eval-mode probabilities.

The model, as WILLOW's gated NetVLAD defines it and as ``configs/gated_netvlad_256.yaml`` builds it
(frames ``rgb [B, N, 1024]``, ``audio [B, N, 128]`` → probabilities ``[B, V]``; every BN has eps 1e-3)::

    x   = frames / ‖concat(rgb, audio)‖ per frame, then BN per modality (same maths as BN over 1152)
    v_m = NetVLAD(x_m): a = softmax(BN(x W)), R = xᵀa − s⊙C, L2 over D per cluster, flatten d·K + k, global L2
          (K clusters for rgb, K/2 for audio)
    h   = concat(v_rgb, v_audio) W_h + b_h                      (no BN, no activation: hidden.activation none)
    h   = h ⊙ σ(BN(h W_cg))                                     (Context Gating)
    p_c = Σ_{m<2} softmax(h W_g)[c, m] · σ(h W_e + b_e)[c, m]   (MoE, dummy expert, class-major columns)
    p   = p ⊙ σ(BN(p W_p))                                      (output Context Gating)

Training step (in one ``tf.function``): BCE on probabilities (ε = 1e-5 inside the logs, summed over classes,
mean over the batch) plus the classifier's slim L2 term, gradients, per-variable ``clip_by_norm(1.0)``, Adam
(the fused ``ResourceApplyAdam`` kernel that TF1's and Keras 2's Adam run), BN moving averages updated.

Precision ``bf16`` follows the Keras ``mixed_bfloat16`` policy: variables stay float32 and are cast to bfloat16
for the matmuls; BN statistics, softmax, normalisations and the loss run in float32 (as Keras keeps BN and
the loss in float32, and as torch autocast does).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import tensorflow as tf

BN_EPS = 1e-3
BN_DECAY = 0.999  # slim / videopool (momentum 1e-3)
MODALITIES = {"rgb": 1024, "audio": 128}
MODEL_NAME = "gated_netvlad_256"  # the videopool config this file mirrors (at any --clusters)


class GatedNetVLAD(tf.Module):
    """TF2 gated NetVLAD with videopool's variable names (``variables_by_name`` keys are torch state-dict keys)."""

    def __init__(self, cluster_size: int, num_classes: int, precision: str = "fp32", hidden_size: int = 1024,
                 num_mixtures: int = 2, l2_penalty: float = 1e-6, seed: int = 0) -> None:
        super().__init__(name="gated_netvlad")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.compute_dtype = tf.bfloat16 if precision == "bf16" else tf.float32
        self.clusters = {"rgb": cluster_size, "audio": cluster_size // 2}
        self.num_classes, self.num_mixtures, self.l2_penalty = num_classes, num_mixtures, l2_penalty
        self.trainable, self.moving = {}, {}  # torch-style names -> tf.Variable
        rng = np.random.default_rng(seed)

        def weight(name, shape, std=None):
            if std is None:  # Glorot uniform
                limit = math.sqrt(6.0 / (shape[0] + shape[1]))
                value = (rng.random(shape, dtype=np.float32) * 2 - 1) * limit
            else:  # float32 draws: the K=256 hidden matrix is 285M values
                value = rng.standard_normal(shape, dtype=np.float32) * std
            self.trainable[name] = tf.Variable(value, name=name.replace(".", "/"))

        def batch_norm(prefix, size):
            self.trainable[prefix + ".weight"] = tf.Variable(tf.ones([size]), name=prefix.replace(".", "/") + "/gamma")
            self.trainable[prefix + ".bias"] = tf.Variable(tf.zeros([size]), name=prefix.replace(".", "/") + "/beta")
            self.moving[prefix + ".running_mean"] = tf.Variable(tf.zeros([size]), trainable=False)
            self.moving[prefix + ".running_var"] = tf.Variable(tf.ones([size]), trainable=False)

        pooled = 0
        for name, size in MODALITIES.items():
            k = self.clusters[name]
            batch_norm(f"poolings.{name}.input_norm", size)
            weight(f"poolings.{name}.pooling.cluster_weights", (size, k), 1 / math.sqrt(size))
            batch_norm(f"poolings.{name}.pooling.cluster_bn", k)
            weight(f"poolings.{name}.pooling.cluster_weights2", (1, size, k), 1 / math.sqrt(size))
            pooled += size * k
        weight("hidden.weight", (pooled, hidden_size), 1 / math.sqrt(cluster_size))
        weight("hidden.bias", (hidden_size,), 0.01)
        weight("gating.weight", (hidden_size, hidden_size), 1 / math.sqrt(hidden_size))
        batch_norm("gating.batch_norm", hidden_size)
        weight("classifier.gate_weight", (hidden_size, num_classes * (num_mixtures + 1)))
        weight("classifier.expert_weight", (hidden_size, num_classes * num_mixtures))
        self.trainable["classifier.expert_bias"] = tf.Variable(tf.zeros([num_classes * num_mixtures]))
        weight("classifier.prob_gating.weight", (num_classes, num_classes), 1 / math.sqrt(num_classes))
        batch_norm("classifier.prob_gating.batch_norm", num_classes)
        self.trainable_list = list(self.trainable.values())

    def variables_by_name(self) -> dict[str, tf.Variable]:
        return {**self.trainable, **self.moving}

    def num_trainable(self) -> int:
        return sum(int(np.prod(v.shape)) for v in self.trainable_list)

    # -- layers -------------------------------------------------------------------------------------------
    def _matmul(self, x, name):
        w = self.trainable[name]
        return tf.matmul(tf.cast(x, self.compute_dtype), tf.cast(w, self.compute_dtype))

    def _batch_norm(self, x, prefix, training):
        x = tf.cast(x, tf.float32)
        mean_var, var_var = self.moving[prefix + ".running_mean"], self.moving[prefix + ".running_var"]
        if training:
            mean, variance = tf.nn.moments(x, axes=[0])
            mean_var.assign_sub((1 - BN_DECAY) * (mean_var - mean))
            var_var.assign_sub((1 - BN_DECAY) * (var_var - variance))
        else:
            mean, variance = mean_var, var_var
        return tf.nn.batch_normalization(x, mean, variance, self.trainable[prefix + ".bias"],
                                         self.trainable[prefix + ".weight"], BN_EPS)

    def _netvlad(self, frames, name, training):
        """``frames [B, N, D]`` float32 → ``[B, D·K]``."""
        batch, num_frames, size = tf.shape(frames)[0], tf.shape(frames)[1], MODALITIES[name]
        k = self.clusters[name]
        frames_c = tf.cast(frames, self.compute_dtype)  # cast once: it feeds two matmuls
        logits = self._matmul(tf.reshape(frames_c, [-1, size]), f"poolings.{name}.pooling.cluster_weights")
        assignment = tf.nn.softmax(self._batch_norm(logits, f"poolings.{name}.pooling.cluster_bn", training))
        assignment = tf.reshape(assignment, [batch, num_frames, k])
        aggregated = tf.matmul(frames_c, tf.cast(assignment, self.compute_dtype), transpose_a=True)  # [B, D, K]
        mass = tf.reduce_sum(assignment, axis=1, keepdims=True)  # [B, 1, K]
        residuals = tf.cast(aggregated, tf.float32) - mass * self.trainable[f"poolings.{name}.pooling.cluster_weights2"]
        residuals = tf.math.l2_normalize(residuals, axis=1)
        return tf.math.l2_normalize(tf.reshape(residuals, [batch, size * k]), axis=1)

    def _context_gating(self, x, prefix, training):
        gates = self._batch_norm(self._matmul(x, prefix + ".weight"), prefix + ".batch_norm", training)
        return x * tf.sigmoid(gates)

    def __call__(self, rgb, audio, training: bool = False):
        frames = {"rgb": tf.cast(rgb, tf.float32), "audio": tf.cast(audio, tf.float32)}
        squared = sum(tf.reduce_sum(tf.square(x), axis=-1, keepdims=True) for x in frames.values())
        inverse_norm = tf.math.rsqrt(tf.maximum(squared, 1e-12))
        pooled = []
        for name, x in frames.items():
            shape = tf.shape(x)
            x = tf.reshape(x * inverse_norm, [-1, MODALITIES[name]])
            x = tf.reshape(self._batch_norm(x, f"poolings.{name}.input_norm", training), shape)
            pooled.append(self._netvlad(x, name, training))
        h = self._matmul(tf.concat(pooled, axis=1), "hidden.weight")
        h = tf.cast(h, tf.float32) + self.trainable["hidden.bias"]
        h = self._context_gating(h, "gating", training)
        m, v = self.num_mixtures, self.num_classes
        gates = tf.cast(self._matmul(h, "classifier.gate_weight"), tf.float32)
        gates = tf.nn.softmax(tf.reshape(gates, [-1, v, m + 1]))
        experts = tf.cast(self._matmul(h, "classifier.expert_weight"), tf.float32)
        experts = tf.reshape(tf.sigmoid(experts + self.trainable["classifier.expert_bias"]), [-1, v, m])
        probabilities = tf.reduce_sum(gates[..., :m] * experts, axis=-1)
        return self._context_gating(probabilities, "classifier.prob_gating", training)

    def regularization_loss(self):
        weights = (self.trainable["classifier.gate_weight"], self.trainable["classifier.expert_weight"])
        return 0.5 * self.l2_penalty * tf.add_n([tf.reduce_sum(tf.square(w)) for w in weights])


def make_train_step(model: GatedNetVLAD, learning_rate: float = 2e-4, clip_norm: float = 1.0,
                    beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8, jit_compile: bool = False):
    """A ``tf.function`` ``step(rgb, audio, labels) -> loss`` that applies one Adam update to ``model``."""
    slots = [(tf.Variable(tf.zeros_like(v), trainable=False), tf.Variable(tf.zeros_like(v), trainable=False))
             for v in model.trainable_list]
    powers = tf.Variable([1.0, 1.0], trainable=False)  # beta1^t, beta2^t
    model._adam_slots = (slots, powers)  # keep them alive with the model

    @tf.function(jit_compile=jit_compile)
    def step(rgb, audio, labels):
        with tf.GradientTape() as tape:
            p = tf.cast(model(rgb, audio, training=True), tf.float32)
            per_element = -(labels * tf.math.log(p + 1e-5) + (1 - labels) * tf.math.log(1 - p + 1e-5))
            loss = tf.reduce_mean(tf.reduce_sum(per_element, axis=1)) + model.regularization_loss()
        grads = tape.gradient(loss, model.trainable_list)
        powers.assign(powers * [beta1, beta2])
        for var, grad, (m, v) in zip(model.trainable_list, grads, slots):
            tf.raw_ops.ResourceApplyAdam(var=var.handle, m=m.handle, v=v.handle, beta1_power=powers[0],
                                         beta2_power=powers[1], lr=learning_rate, beta1=beta1, beta2=beta2,
                                         epsilon=epsilon, grad=tf.clip_by_norm(grad, clip_norm))
        return loss

    return step


def make_predict(model: GatedNetVLAD, jit_compile: bool = False):
    """A ``tf.function`` ``predict(rgb, audio) -> probabilities`` in inference mode (moving BN statistics)."""
    return tf.function(lambda rgb, audio: model(rgb, audio, training=False), jit_compile=jit_compile)


def random_batch(batch_size: int, num_frames: int, num_classes: int, precision: str = "fp32", seed: int = 0):
    """Frames uniform in [-2, 2) (bf16 inputs for ``bf16``) and ~3 positive labels per video (the timing batch)."""
    rng = np.random.default_rng(seed)
    dtype = tf.bfloat16 if precision == "bf16" else tf.float32
    rgb, audio = (tf.cast(rng.uniform(-2, 2, (batch_size, num_frames, d)).astype(np.float32), dtype)
                  for d in MODALITIES.values())
    labels = np.zeros((batch_size, num_classes), np.float32)
    labels[np.repeat(np.arange(batch_size), 3), rng.integers(0, num_classes, 3 * batch_size)] = 1
    return rgb, audio, tf.constant(labels)


def set_threads(threads: int | None) -> None:
    """Limit TF's thread pools (call before TF runs any op)."""
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


TRAIN_LABEL = "TF2 graph"  # what bench_train prints in its "bf16 scheme" column for TF rows


class TrainRunner:
    """``bench_train.Runner``'s interface for the TF model: ``runner()`` runs one step and returns its seconds."""

    def __init__(self, clusters: int, num_classes: int, precision: str, batch_size: int, num_frames: int,
                 flops: float) -> None:
        self.model = GatedNetVLAD(clusters, num_classes, precision)
        self.step = make_train_step(self.model)
        self.batch = random_batch(batch_size, num_frames, num_classes)
        self.clusters, self.precision, self.scheme, self.flops = clusters, precision, TRAIN_LABEL, flops
        self.times: list[float] = []

    def __call__(self) -> float:
        start = time.perf_counter()
        self.step(*self.batch).numpy()  # .numpy() waits for the step to finish
        return time.perf_counter() - start


class InferRunner:
    """One inference batch of the TF2 model per call (returns its seconds), for ``bench_infer.py``."""

    def __init__(self, clusters: int, num_classes: int, precision: str, batch_size: int, num_frames: int) -> None:
        self.predict = make_predict(GatedNetVLAD(clusters, num_classes, precision))
        self.rgb, self.audio, _ = random_batch(batch_size, num_frames, num_classes)
        self.times: list[float] = []

    def __call__(self) -> float:
        start = time.perf_counter()
        self.predict(self.rgb, self.audio).numpy()
        return time.perf_counter() - start


def copy_torch_weights(tf_model: GatedNetVLAD, torch_model) -> None:
    """Copy a videopool ``gated_netvlad`` model's parameters and BN running statistics into ``tf_model``."""
    state = torch_model.state_dict()
    for name, variable in tf_model.variables_by_name().items():
        if name not in state:
            raise KeyError(f"torch state dict has no {name!r}; the TF model no longer mirrors the torch one")
        variable.assign(state[name].detach().float().numpy().reshape(variable.shape))


def _self_check(argv=None) -> int:
    p = argparse.ArgumentParser(description="Check the TF model against videopool's (parameter count, outputs).")
    p.add_argument("--clusters", type=int, default=16)
    p.add_argument("--num-classes", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--num-frames", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--count-only", action="store_true", help="only compare parameter counts")
    args = p.parse_args(argv)
    set_threads(args.threads)
    import torch

    from videopool.models import count_parameters, create_model

    torch.set_num_threads(args.threads)
    k, v = args.clusters, args.num_classes
    tf_model = GatedNetVLAD(k, v)
    expected = count_parameters(create_model("gated_netvlad_256", cluster_size=k, num_classes=v, device="meta"))
    print(f"K={k} V={v}: TF trainable parameters {tf_model.num_trainable():,}, videopool {expected:,}")
    ok = tf_model.num_trainable() == expected
    if args.count_only:
        print("OK" if ok else "MISMATCH")
        return 0 if ok else 1

    torch.manual_seed(0)
    torch_model = create_model("gated_netvlad_256", cluster_size=k, num_classes=v).train()
    rgb, audio, _ = random_batch(args.batch_size, args.num_frames, v)
    frames = {"rgb": torch.from_numpy(rgb.numpy()), "audio": torch.from_numpy(audio.numpy())}
    with torch.no_grad():  # a few train-mode passes give the running statistics non-trivial values
        for _ in range(3):
            torch_model(frames)
        for module in torch_model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_var.mul_(torch.rand_like(module.running_var) + 0.5)
    torch_model.eval()
    copy_torch_weights(tf_model, torch_model)
    with torch.no_grad():
        expected_p = torch_model(frames).numpy()
        torch_model.train()
        expected_train = torch_model(frames).numpy()  # batch statistics; also moves the running ones, so last
    got = make_predict(tf_model)(rgb, audio).numpy()
    got_train = tf.function(lambda r, a: tf_model(r, a, training=True))(rgb, audio).numpy()
    for mode, tf_p, torch_p in (("eval", got, expected_p), ("train", got_train, expected_train)):
        error = float(np.max(np.abs(tf_p - torch_p)))
        print(f"{mode}-mode probabilities: max |TF - torch| = {error:.2e} "
              f"(range {torch_p.min():.3f}..{torch_p.max():.3f})")
        ok &= error < 1e-5
    step = make_train_step(tf_model)
    rgb, audio, labels = random_batch(args.batch_size, args.num_frames, v, seed=1)
    losses = [float(step(rgb, audio, labels)) for _ in range(3)]
    print(f"three TF training steps on one batch: losses {', '.join(f'{x:.3f}' for x in losses)}")
    ok &= losses[-1] < losses[0]
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(_self_check())
