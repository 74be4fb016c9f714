"""TF1 checkpoint variable names -> videopool state-dict names (WILLOW, NLVLAD, NeXtVLAD), as pure functions on names.

The TF1 reference models (WILLOW ``NetVLADModelLF``/``NetFVModelLF``/``*DbofModelLF``, YongyiTang92's non-local
NetVLAD) keep every dense weight in ``[in, out]`` layout, and so does videopool, so a variable loads by name
without a transpose; only the input batch norm needs more than a rename: TF normalises the concatenated 1152
columns with one ``input_bn``, videopool keeps one batch norm per modality (``poolings.rgb.input_norm`` =
columns 0-1023, ``poolings.audio.input_norm`` = columns 1024-1151). Nothing here imports TensorFlow: the
caller reads the checkpoint (``tf.train.load_checkpoint``, any tensor-bundle reader, or a ``.npz`` of it) and
hands over names and arrays (:mod:`videopool.data.tf_checkpoint` reads checkpoints). ``videopool import-tf``
(:mod:`videopool.models.tf_import`) builds on these functions.

=======================================================  ==========================================================
TF variable (optionally under ``tower/``)                videopool parameter / buffer
=======================================================  ==========================================================
``input_bn/{gamma,beta,moving_mean,moving_variance}``    ``poolings.<m>.input_norm.{weight,bias,running_mean,
                                                         running_var}``, columns of modality ``m``
``video_VLAD/X``, ``video_FV/X``, ``video_DBOF/X``       ``poolings.rgb.pooling.X`` (``audio_*`` ->
                                                         ``poolings.audio.pooling.X``)
``<stream>/cluster_bn/gamma`` (any BN scope)             ``poolings.<m>.pooling.cluster_bn.weight`` (beta ->
                                                         bias, moving_mean -> running_mean, moving_variance ->
                                                         running_var)
``<stream>/nonlocal_{theta,phi,g,out}``                  ``poolings.<m>.pooling.nonlocal_blocks.0.nonlocal_*``
``<stream>/nonlocal_layer/nonlocal_*`` (shared blocks)   ``poolings.<m>.pooling.nonlocal_blocks.0.nonlocal_*``
``hidden1_weights``, ``hidden1_biases``, ``hidden1_bn``  ``hidden.weight``, ``hidden.bias``, ``hidden.batch_norm``
``gating_weights_2``, ``gating_bn/*``                    ``gating.weight``, ``gating.batch_norm.*``
``gating_weights_1`` (NeXtVLAD SE gating)                ``gating.reduce_weight``
``<stream>/fully_connected/{weights,biases}``            ``poolings.<m>.pooling.expansion_{weights,biases}``
``<stream>/fully_connected_1/{weights,biases}``          ``poolings.<m>.pooling.attention_{weights,biases}``
                                                         (NeXtVLAD, :attr:`NeXtVLAD.tf_variable_names`)
``fully_connected/{weights,biases}`` (LogisticModel)     ``classifier.weight``, ``classifier.bias``
``gates/weights``                                        ``classifier.gate_weight``
``experts/weights``, ``experts/biases``                  ``classifier.expert_weight``, ``classifier.expert_bias``
``gating_prob_weights``, ``gating_prob_bn/*``            ``classifier.prob_gating.weight``,
                                                         ``classifier.prob_gating.batch_norm.*``
``global_step``, optimizer slots (``.../Adam``,          skipped (not part of the model)
``.../Adam_1``, ``beta1_power``, ``beta2_power``)
=======================================================  ==========================================================

Names outside this table (recurrent kernels, which need a split and a gate reordering; the NeXtVLAD mixture) raise
``KeyError``: a silent skip would leave a randomly initialised parameter behind.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping, NamedTuple

import numpy as np

from videopool.layers.nextvlad import NeXtVLAD

__all__ = ["TF_SKIPPED", "TFTarget", "convert_tf_weights", "is_skipped_tf_name", "tf_to_videopool"]

# TF1 batch-norm variables -> torch BatchNorm1d names.
_BN_FIELDS = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}

# Stream scopes of the WILLOW-family frame models: the first modality (video, "rgb") and the second (audio).
_STREAMS = {"video_VLAD": 0, "video_FV": 0, "video_DBOF": 0, "audio_VLAD": 1, "audio_FV": 1, "audio_DBOF": 1}

_HEAD = {
    "hidden1_weights": "hidden.weight",
    "hidden1_biases": "hidden.bias",
    "gating_weights_2": "gating.weight",
    "gating_biases": "gating.bias",
    "gates/weights": "classifier.gate_weight",
    "experts/weights": "classifier.expert_weight",
    "experts/biases": "classifier.expert_bias",
    "gating_prob_weights": "classifier.prob_gating.weight",
    "gating_prob_biases": "classifier.prob_gating.bias",
    "gating_weights_1": "gating.reduce_weight",  # NeXtVLAD's SE gating bottleneck
    "fully_connected/weights": "classifier.weight",  # LogisticModel (slim.fully_connected)
    "fully_connected/biases": "classifier.bias",
}
# NeXtVLAD's two slim.fully_connected layers inside a stream scope (the other names are shared with NetVLAD)
_STREAM_DENSE = {key: value for key, value in NeXtVLAD.tf_variable_names.items() if key.startswith("fully_connected")}
_HEAD_BN = {"hidden1_bn": "hidden.batch_norm", "gating_bn": "gating.batch_norm",
            "gating_prob_bn": "classifier.prob_gating.batch_norm"}

TF_SKIPPED = ("global_step", "beta1_power", "beta2_power")
_SLOT = re.compile(r"/(Adam|Adam_1|Momentum|ExponentialMovingAverage)$")


class TFTarget(NamedTuple):
    """Where one TF variable goes: ``name`` in the videopool state dict, and for a variable split by columns
    (``input_bn``) the half-open column range ``[start, stop)`` of the TF tensor that it receives (else None)."""

    name: str
    start: int | None = None
    stop: int | None = None


def is_skipped_tf_name(tf_name: str) -> bool:
    """True for checkpoint variables that are not model state: ``global_step``, Adam slots and powers."""
    return tf_name.split("/")[-1] in TF_SKIPPED or bool(_SLOT.search(tf_name))


def tf_to_videopool(tf_name: str, modalities: Mapping[str, int] | Iterable[str] = ("rgb", "audio"), *,
                    sizes: Mapping[str, int] | None = None) -> list[TFTarget]:
    """The videopool state-dict entries that the TF1 variable ``tf_name`` fills (late-fusion models).

    ``modalities`` is the model's ordered modality list (or ``{name: feature size}``, whose sizes then split
    ``input_bn``; ``sizes`` gives them otherwise; default rgb 1024, audio 128). A leading ``tower/`` scope
    (NLVLAD, linrongc) is ignored. Returns one target, or one per modality for ``input_bn``. Raises ``KeyError``
    for a name outside the table of this module (and for the skipped names: test :func:`is_skipped_tf_name`
    first).

    >>> tf_to_videopool("video_VLAD/cluster_bn/moving_variance")
    [TFTarget(name='poolings.rgb.pooling.cluster_bn.running_var', start=None, stop=None)]
    >>> [t.name for t in tf_to_videopool("tower/input_bn/gamma")]
    ['poolings.rgb.input_norm.weight', 'poolings.audio.input_norm.weight']
    """
    names = list(modalities)
    if sizes is None:
        sizes = modalities if isinstance(modalities, Mapping) else {"rgb": 1024, "audio": 128}
    name = tf_name[len("tower/"):] if tf_name.startswith("tower/") else tf_name
    if is_skipped_tf_name(name):
        raise KeyError(f"{tf_name!r} is not model state (global step / optimizer slot); skip it")
    scope, _, leaf = name.rpartition("/")
    if scope == "input_bn" and leaf in _BN_FIELDS:
        targets, start = [], 0
        for modality in names:
            stop = start + int(sizes[modality])
            targets.append(TFTarget(f"poolings.{modality}.input_norm.{_BN_FIELDS[leaf]}", start, stop))
            start = stop
        return targets
    if name in _HEAD:
        return [TFTarget(_HEAD[name])]
    if scope in _HEAD_BN and leaf in _BN_FIELDS:
        return [TFTarget(f"{_HEAD_BN[scope]}.{_BN_FIELDS[leaf]}")]
    stream, _, rest = name.partition("/")
    if stream in _STREAMS and rest:
        index = _STREAMS[stream]
        if index >= len(names):
            raise KeyError(f"{tf_name!r} belongs to stream {index} but the model has modalities {names}")
        prefix = f"poolings.{names[index]}.pooling."
        inner_scope, _, inner_leaf = rest.rpartition("/")
        if inner_leaf.startswith("nonlocal_") and inner_scope in ("", "nonlocal_layer"):
            return [TFTarget(f"{prefix}nonlocal_blocks.0.{inner_leaf}")]
        if inner_scope and inner_leaf in _BN_FIELDS and "/" not in inner_scope:
            return [TFTarget(f"{prefix}{inner_scope}.{_BN_FIELDS[inner_leaf]}")]
        if rest in _STREAM_DENSE:
            return [TFTarget(prefix + _STREAM_DENSE[rest])]
        if not inner_scope:
            return [TFTarget(prefix + rest)]
    raise KeyError(f"no videopool parameter is known for the TF variable {tf_name!r} (see videopool.models.tf_names)")


def convert_tf_weights(arrays: Mapping[str, np.ndarray], modalities: Mapping[str, int] | Iterable[str] = ("rgb", "audio"),
                       *, sizes: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
    """A videopool state dict (numpy arrays) from TF variables ``{tf_name: array}``; non-model state is skipped.

    ``input_bn`` is split into its per-modality column ranges; every other array is passed through unchanged
    (TF and videopool share the ``[in, out]`` layout). Load the result with
    ``model.load_state_dict({k: torch.from_numpy(v) for k, v in ...}, strict=False)`` and check the missing keys
    (``num_batches_tracked`` buffers are not in TF checkpoints).
    """
    state: dict[str, np.ndarray] = {}
    for tf_name, value in arrays.items():
        if is_skipped_tf_name(tf_name):
            continue
        value = np.asarray(value)
        for target in tf_to_videopool(tf_name, modalities, sizes=sizes):
            if target.name in state:
                raise KeyError(f"two TF variables map onto {target.name!r} (the second is {tf_name!r})")
            state[target.name] = value if target.start is None else value[..., target.start:target.stop]
    return state
