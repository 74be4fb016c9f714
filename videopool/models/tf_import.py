"""A TF1 checkpoint of the WILLOW, NeXtVLAD or non-local NetVLAD code as a videopool model (``videopool import-tf``).

Three steps, each a function so that scripts and tests can use them alone:

1. :func:`infer_overrides` reads the variable *shapes* and names and returns the model-config overrides they
   determine on top of a named configuration: the feature sizes, ``K`` (``cluster_weights``; NeXtVLAD
   ``cluster_weights2``), the audio stream's ``K`` (divisor or explicit count), ``H`` (``hidden1_weights``),
   ``V`` and ``M`` (``gates/weights [H, V(M+1)]`` and ``experts/weights [H, VM]``), NeXtVLAD's ``G`` and ``λ``
   (the attention and expansion FCs), the SE reduction ``r``, and which optional parts exist: input batch norm,
   NetVLAD's centroids (NetRVLAD has none), NetFV's coupled centroids, the hidden layer's bias or batch norm,
   Context/SE gating, probability gating, the non-local blocks (shared weights under ``nonlocal_layer/``) and
   their reduction (flatten or mean, from the hidden layer's input size).
2. :func:`reference_settings` turns the reference code's own flag names (``--set moe_prob_gating=true``,
   ``--set iterations=300``, :data:`REFERENCE_FLAGS`) into videopool keys, for the choices the variables cannot
   tell (the non-local normalisation, the number of shared blocks, the frames sampled per video).
3. :func:`tf_state_dict` maps every variable onto the model built from the result
   (:mod:`videopool.models.tf_names`) and lists what is left over: optimizer slots and ``global_step`` are ignored
   and counted, any other unused variable, any parameter or statistic left without a value and any shape mismatch
   is a :class:`TFImportError` listing all of them. Nothing is silently dropped or left at its initial value.

The reference behaviours that differ from videopool's defaults are selected here (docs/import-tf.md): the
non-local blocks keep the released code's ``W_φ`` value branch (``value_weights: phi``), NeXtVLAD's
``cluster_bn`` counts padded rows in training (``padded_frames_in_batch_norm``), and WILLOW/NLVLAD runs sample
``--iterations`` random frames per video (training and ``eval_sampling``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch

from videopool.core.errors import UserError
from videopool.models.config import ModelConfig
from videopool.models.tf_names import is_skipped_tf_name, tf_to_videopool

__all__ = ["REFERENCE_FLAGS", "TFImportError", "TFStateReport", "check_report", "fold_rgb_unwhitening",
           "infer_overrides", "reference_settings", "reference_training", "tf_state_dict"]

_VIDEO_SCOPES = ("video_VLAD", "video_FV", "video_DBOF")
_AUDIO_SCOPES = ("audio_VLAD", "audio_FV", "audio_DBOF")


# Pooling types one named configuration may turn into when the variables say so (NetRVLAD is NetVLAD without
# centroids); any other difference means the user chose a configuration of another family.
_POOLING_FAMILIES = ({"netvlad", "netrvlad"}, {"nonlocal_netvlad", "nonlocal_netrvlad"}, {"nextvlad"}, {"netfv"},
                     {"soft_dbow", "gated_soft_dbow"})
_EXAMPLE_CONFIG = {"netvlad": "gated_netvlad_256", "netrvlad": "gated_netrvlad_256", "nextvlad": "nextvlad_k128_g8",
                   "nonlocal_netvlad": "nl_netvlad_128", "nonlocal_netrvlad": "nl_netrvlad_128",
                   "netfv": "gated_netfv_128"}


class TFImportError(UserError):
    """The checkpoint's variables do not fit the configuration (the message lists every mismatch)."""


def _strip(name: str) -> str:
    return name[len("tower/"):] if name.startswith("tower/") else name


def _scope(names, candidates) -> str | None:
    """The stream scope (``video_VLAD``, ...) that ``names`` use, if any."""
    for scope in candidates:
        if any(n.startswith(scope + "/") for n in names):
            return scope
    return None


def _need(model: Mapping[str, tuple[int, ...]], name: str, rank: int) -> tuple[int, ...]:
    """The shape of ``name``, which must exist with ``rank`` dimensions (sizes are read from it)."""
    if name not in model or len(model[name]) != rank:
        found = f"shape {list(model[name])}" if name in model else "none"
        raise TFImportError(f"the checkpoint needs a {rank}-d variable {name!r} (found {found}) to read the model's "
                            "sizes: not a checkpoint of the WILLOW, NeXtVLAD or non-local NetVLAD code as released")
    return model[name]


def _family(pooling_type: str) -> str:
    if pooling_type == "nextvlad":
        return "nextvlad"
    return "willow"  # WILLOW and NLVLAD share the head conventions (hidden BN only with ReLU6, Context Gating)


def infer_overrides(shapes: Mapping[str, tuple[int, ...]], base: ModelConfig) -> dict[str, Any]:
    """Model-config overrides (dotted keys) that the variables ``{tf_name: shape}`` determine, on top of ``base``
    (the named configuration the user chose). Only the two-stream late-fusion layout of the references (a video
    and an audio stream) is read; the modality names are ``base``'s first two."""
    model = {_strip(n): tuple(s) for n, s in shapes.items() if not is_skipped_tf_name(n)}
    names = list(base.modalities)
    out: dict[str, Any] = {}
    video, audio = _scope(model, _VIDEO_SCOPES), _scope(model, _AUDIO_SCOPES)
    if video is None:
        raise TFImportError(f"the checkpoint has no video stream scope ({', '.join(_VIDEO_SCOPES)}): not a WILLOW, "
                            "NeXtVLAD or non-local NetVLAD frame-level model")
    streams = [video] + ([audio] if audio else [])
    if len(names) < len(streams):
        raise TFImportError(f"the checkpoint has {len(streams)} streams but --model has modalities {names}")
    pooling_type = base.pooling.type
    nextvlad = f"{video}/fully_connected_1/weights" in model
    nonlocal_ = any(k.startswith(f"{video}/nonlocal_") or k.startswith(f"{video}/nonlocal_layer/") for k in model)
    if nextvlad:
        pooling_type = "nextvlad"
    elif nonlocal_:
        pooling_type = "nonlocal_netvlad" if f"{video}/cluster_weights2" in model else "nonlocal_netrvlad"
    elif video == "video_FV":
        pooling_type = "netfv"
    elif video == "video_VLAD" and pooling_type in ("netvlad", "netrvlad"):
        pooling_type = "netvlad" if f"{video}/cluster_weights2" in model else "netrvlad"
    elif video == "video_DBOF" and pooling_type in ("soft_dbow", "gated_soft_dbow"):
        pooling_type = "gated_soft_dbow" if f"{video}/dim_red" in model else "soft_dbow"
    family = next((group for group in _POOLING_FAMILIES if base.pooling.type in group), {base.pooling.type})
    if pooling_type not in family:
        raise TFImportError(f"the checkpoint holds a {pooling_type} model, but --model is a {base.pooling.type} "
                            f"configuration; use one of the {pooling_type} family, e.g. --model "
                            f"{_EXAMPLE_CONFIG.get(pooling_type, 'gated_netvlad_256')}")
    out["pooling.type"] = pooling_type

    sizes, clusters = {}, {}
    for modality, scope in zip(names, streams):
        if nextvlad:
            expand = _need(model, f"{scope}/fully_connected/weights", 2)
            sizes[modality] = expand[0]
            clusters[modality] = _need(model, f"{scope}/cluster_weights2", 3)[2]
            groups = _need(model, f"{scope}/fully_connected_1/weights", 2)[1]
            if modality == names[0]:
                out["pooling.options.groups"] = groups
                out["pooling.options.expansion"] = expand[1] // expand[0]
                out["pooling.options.padded_frames_in_batch_norm"] = True  # the reference's training statistics
            else:
                out[f"pooling.per_modality.{modality}.options.groups"] = groups
        else:
            sizes[modality], clusters[modality] = _need(model, f"{scope}/cluster_weights", 2)
    out["modalities"] = {name: sizes.get(name, base.modalities[name]) for name in names[:len(streams)]}
    k = clusters[names[0]]
    out["pooling.cluster_size"] = k
    if audio:
        k_audio = clusters[names[1]]
        divisor = max(1, k // k_audio)
        if max(1, k // divisor) == k_audio:  # WILLOW's K/2 (Python 2 floor division), DBoF's K/8, ...
            out[f"pooling.cluster_size_divisor.{names[1]}"] = divisor
        else:
            out[f"pooling.cluster_size_divisor.{names[1]}"] = 1
            out[f"pooling.per_modality.{names[1]}.cluster_size"] = k_audio
    if not nextvlad:  # NeXtVLAD always has its cluster_bn (the layer takes no add_batch_norm)
        out["pooling.add_batch_norm"] = f"{video}/cluster_bn/gamma" in model
    if pooling_type == "netfv":
        out["pooling.options.couple_weights"] = f"{video}/cluster_weights2" not in model
    if nonlocal_:
        out["pooling.options.value_weights"] = "phi"  # the released code's value branch (README, "bug")
        out["pooling.options.shared_weights"] = any(k.startswith(f"{video}/nonlocal_layer/") for k in model)
    out["input_batch_norm"] = "input_bn/gamma" in model

    hidden = _need(model, "hidden1_weights", 2)
    out["hidden.size"] = hidden[1]
    out["hidden.bias"] = "hidden1_biases" in model
    out["hidden.batch_norm"] = "hidden1_bn/gamma" in model
    # WILLOW/NLVLAD: hidden1_bn exists only with --netvlad_relu (then ReLU6); NeXtVLAD: BN without activation
    out["hidden.activation"] = "relu6" if out["hidden.batch_norm"] and _family(pooling_type) == "willow" else "none"
    if nonlocal_:  # the hidden layer's input tells a flattened descriptor (D·K per stream) from a reduced one (D)
        reduced = hidden[0] != sum(sizes[m] * clusters[m] for m in sizes)
        chosen = base.pooling.options.get("reduction")
        out["pooling.options.reduction"] = (chosen if chosen in ("avg", "max") else "avg") if reduced else "flatten"

    if "gating_weights_1" in model:
        out["gating.type"] = "se"
        out["gating.reduction"] = max(1, hidden[1] // _need(model, "gating_weights_1", 2)[1])
    elif "gating_weights_2" in model:
        out["gating.type"] = "context"
        out["gating.add_batch_norm"] = "gating_bn/gamma" in model
    else:
        out["gating.type"] = "none"

    if "gates/weights" in model and "experts/weights" in model:
        gate_columns, expert_columns = _need(model, "gates/weights", 2)[1], _need(model, "experts/weights", 2)[1]
        classes = gate_columns - expert_columns
        if classes < 1 or expert_columns % classes:
            raise TFImportError(f"gates/weights {list(model['gates/weights'])} and experts/weights "
                                f"{list(model['experts/weights'])} are not an MoE of V classes and M experts")
        out.update({"classifier.type": "moe", "classifier.num_mixtures": expert_columns // classes,
                    "classifier.prob_gating": "gating_prob_weights" in model, "num_classes": classes})
    elif "fully_connected/weights" in model:
        out.update({"classifier.type": "logistic", "classifier.prob_gating": "gating_prob_weights" in model,
                    "num_classes": _need(model, "fully_connected/weights", 2)[1]})
    else:
        raise TFImportError("the checkpoint has neither an MoE (gates/weights, experts/weights) nor a logistic "
                            "classifier (fully_connected/weights)")
    return out


def _flag_bool(flag: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"--set {flag}={value!r}: the reference flag {flag} is true or false")
    return value


def _relu(flag: str, value: Any) -> dict[str, Any]:
    # only the activation: whether the hidden layer has hidden1_bn or hidden1_biases is read off the variables
    # (WILLOW adds the BN when relu and add_batch_norm, so relu with --netvlad_add_batch_norm=False has a bias)
    return {"hidden.activation": "relu6" if _flag_bool(flag, value) else "none"}


def _to(key: str, convert: Callable[[str, Any], Any] | None = None) -> Callable[[str, Any], dict[str, Any]]:
    return lambda flag, value: {key: convert(flag, value) if convert else value}


def _when(key: str, value_if_true: Any) -> Callable[[str, Any], dict[str, Any]]:
    return lambda flag, value: {key: value_if_true} if _flag_bool(flag, value) else {}


# Reference flag -> videopool keys (model keys dotted, training keys bare). Sizes are read from the variables, so
# their flags (netvlad_cluster_size, ...) are only needed to check; give them and a mismatch is reported.
REFERENCE_FLAGS: dict[str, Callable[[str, Any], dict[str, Any]]] = {
    "iterations": lambda flag, value: {"num_frames": value},
    # False: the reference draws a random contiguous window (SampleRandomSequence), which inference has no
    # equivalent of; evaluation then uses every frame
    "sample_random_frames": lambda flag, value: {"frame_selection": "random" if _flag_bool(flag, value) else
                                                 "sequence", "eval_sampling": "random" if value else "all"},
    "moe_prob_gating": _to("classifier.prob_gating", _flag_bool),
    "moe_num_mixtures": _to("classifier.num_mixtures"),
    "moe_l2": _to("classifier.l2_penalty"),
    "gating": lambda flag, value: {"gating.type": "context" if _flag_bool(flag, value) else "none"},
    "netvlad_relu": _relu, "fv_relu": _relu, "dbof_relu": _relu,
    "netvlad_cluster_size": _to("pooling.cluster_size"), "fv_cluster_size": _to("pooling.cluster_size"),
    "dbof_cluster_size": _to("pooling.cluster_size"), "nextvlad_cluster_size": _to("pooling.cluster_size"),
    "netvlad_hidden_size": _to("hidden.size"), "fv_hidden_size": _to("hidden.size"),
    "dbof_hidden_size": _to("hidden.size"), "nextvlad_hidden_size": _to("hidden.size"),
    "lightvlad": lambda flag, value: {"pooling.type": "netrvlad" if _flag_bool(flag, value) else "netvlad"},
    "fv_couple_weights": _to("pooling.options.couple_weights", _flag_bool),
    "netvlad_add_batch_norm": _to("pooling.add_batch_norm", _flag_bool),
    "dbof_add_batch_norm": _to("pooling.add_batch_norm", _flag_bool),
    "softdbof_maxpool": _to("pooling.options.max_pool", _flag_bool),
    "groups": _to("pooling.options.groups"), "expansion": _to("pooling.options.expansion"),
    "gating_reduction": _to("gating.reduction"), "drop_rate": _to("hidden.dropout"),
    "beforeNorm": _when("pooling.options.intra_norm", "after_block"),  # NLVLAD: intra-L2 after the block
    "afterNorm": _when("pooling.options.intra_norm", "before_block"),  # ... before it
    "avg_netvlad": _when("pooling.options.reduction", "avg"),
    "max_netvlad": _when("pooling.options.reduction", "max"),
    "num_nonlocal_block": _to("pooling.options.num_blocks"),
    "nonlocalvlad_shared": _to("pooling.options.shared_weights", _flag_bool),
    "nonlocalvlad": lambda flag, value: _no_keys(_flag_bool(flag, value)),  # the nonlocal_* variables tell
    "video_level_classifier_model": lambda flag, value: {"classifier.type": _classifier(value)},
}


def _no_keys(_checked: Any) -> dict[str, Any]:
    return {}


_CLASSIFIERS = {"MoeModel": "moe", "willow_MoeModel": "moe", "LogisticModel": "logistic"}


def _classifier(value: Any) -> str:
    if value not in _CLASSIFIERS:
        raise UserError(f"--set video_level_classifier_model={value!r}: import-tf reads "
                        f"{', '.join(_CLASSIFIERS)}")
    return _CLASSIFIERS[value]


def reference_settings(settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(translated, rest)``: the reference flags of ``settings`` as videopool keys, and the other keys as given
    (videopool model or training keys, validated by the caller)."""
    translated, rest = {}, {}
    for key, value in settings.items():
        if key in REFERENCE_FLAGS:
            translated.update(REFERENCE_FLAGS[key](key, value))
        else:
            rest[key] = value
    return translated, rest


def reference_training(config: ModelConfig, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """Training keys of the reference behaviour: WILLOW/NLVLAD sample frames at random with replacement in training
    *and* evaluation (``SampleRandomFrames``); NeXtVLAD pools every frame with a mask."""
    if config.pooling.type == "nextvlad":
        return {"frame_selection": "all", "eval_sampling": "all"}
    return {"frame_selection": "random", "eval_sampling": "random"}


@dataclass
class TFStateReport:
    """What :func:`tf_state_dict` did with each variable."""

    loaded: list[str] = field(default_factory=list)  # TF names whose values are in the state dict
    ignored: list[str] = field(default_factory=list)  # optimizer slots, global_step
    unused: list[str] = field(default_factory=list)  # model-looking variables no parameter takes
    missing: list[str] = field(default_factory=list)  # parameters / statistics left without a value
    mismatched: list[str] = field(default_factory=list)  # "tf name [shape] -> param [shape]"


def tf_state_dict(model: torch.nn.Module, config: ModelConfig, shapes: Mapping[str, tuple[int, ...]],
                  read: Callable[[str], np.ndarray]) -> tuple[dict[str, torch.Tensor], TFStateReport]:
    """The state dict of ``model`` filled from the variables ``shapes`` (values fetched with ``read(name)`` only
    for the variables that are used), and the report; no error is raised here (see :func:`check_report`)."""
    own = model.state_dict()
    report, plan, mismatched = TFStateReport(), {}, set()
    for name in sorted(shapes):
        if is_skipped_tf_name(name):
            report.ignored.append(name)
            continue
        try:
            targets = tf_to_videopool(name, config.modalities)
        except KeyError:
            report.unused.append(name)
            continue
        shape = tuple(shapes[name])
        for target in targets:
            if target.name not in own:
                report.unused.append(name)
                break
            wanted = tuple(own[target.name].shape)
            got = shape
            if target.start is not None and shape and shape[-1] == targets[-1].stop:  # columns of input_bn
                got = shape[:-1] + (target.stop - target.start,)
            if got != wanted:
                report.mismatched.append(f"{name} {list(shape)} -> {target.name} {list(wanted)}")
                mismatched.update(t.name for t in targets)
                break
        else:
            plan[name] = targets
    state: dict[str, torch.Tensor] = {}
    for name, targets in plan.items():
        value = read(name)
        for target in targets:
            part = value if target.start is None else value[..., target.start:target.stop]
            state[target.name] = torch.from_numpy(np.ascontiguousarray(part)).to(own[target.name].dtype)
        report.loaded.append(name)
    for key, value in own.items():
        if key not in state and key not in mismatched:
            if key.endswith("num_batches_tracked"):  # TF keeps no batch counter
                state[key] = value.clone()
            else:
                report.missing.append(key)
    return state, report


def check_report(report: TFStateReport, allow_unused: bool = False, model_name: str = "the model") -> None:
    """Raise :class:`TFImportError` listing every problem of ``report`` (unused variables only when not
    ``allow_unused``; optimizer slots are never a problem)."""
    problems = []
    if report.mismatched:
        problems.append(f"{len(report.mismatched)} shape mismatch(es): " + "; ".join(report.mismatched))
    if report.missing:
        problems.append(f"{len(report.missing)} parameter(s) of {model_name} with no variable in the checkpoint: "
                        + ", ".join(report.missing))
    if report.unused and not allow_unused:
        problems.append(f"{len(report.unused)} checkpoint variable(s) that no parameter takes: "
                        + ", ".join(report.unused) + " (--allow-unused drops them)")
    if problems:
        raise TFImportError("the checkpoint does not fit the configuration: " + " | ".join(problems)
                            + "; check --model and the reference flags given with --set (docs/import-tf.md)")


DEQUANTIZATION_BIAS = 4.0 / 512.0  # what linrongc subtracts from the dequantised rgb before un-whitening


def fold_rgb_unwhitening(state: dict[str, torch.Tensor], config: ModelConfig, eigenvalues: np.ndarray) -> None:
    """Fold linrongc's rgb pre-processing into NeXtVLAD's expansion layer, in place.

    The reference's ``train.py``/``eval.py``/``inference.py`` feed NeXtVLAD ``x' = (x − 4/512) · s`` with
    ``s_j = sqrt(e_j) + 1e-4`` (``e`` = the PCA eigenvalues of ``yt8m_pca/eigenvals.npy``, first ``D`` used),
    which undoes the dataset's whitening approximately. The expansion FC is affine, so
    ``x' W + b = x (diag(s) W) + (b − (4/512 · s) W)`` exactly: the imported model then takes the features as
    videopool reads them. A padded (zero) frame gives ``b − (4/512 · s) W`` as in the reference, where padding rows
    are ``(0 − 4/512) · s``. Computed in float64, stored as float32."""
    if config.pooling.type != "nextvlad":
        raise TFImportError(f"the rgb un-whitening is linrongc's NeXtVLAD pre-processing; this is a "
                            f"{config.pooling.type} model, whose reference feeds the features as stored")
    rgb = next(iter(config.modalities))
    weights_key = f"poolings.{rgb}.pooling.expansion_weights"
    size = state[weights_key].shape[0]
    values = np.asarray(eigenvalues, dtype=np.float64).reshape(-1)
    if values.size < size or not np.all(np.isfinite(values)) or values.min() < 0:
        raise TFImportError(f"the eigenvalues must be {size} or more finite non-negative numbers (linrongc's "
                            f"yt8m_pca/eigenvals.npy holds 2048), got {values.size} values"
                            + ("" if values.size < size else " with a negative or non-finite one"))
    scale = np.sqrt(values[:size]) + 1e-4
    weights = state[weights_key].double().numpy()
    bias_key = f"poolings.{rgb}.pooling.expansion_biases"
    bias = state[bias_key].double().numpy() - (DEQUANTIZATION_BIAS * scale) @ weights
    state[weights_key] = torch.from_numpy(scale[:, None] * weights).float()
    state[bias_key] = torch.from_numpy(bias).float()
