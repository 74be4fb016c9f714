"""``videopool import-tf``: a TensorFlow 1 checkpoint of the WILLOW, NeXtVLAD or non-local NetVLAD code as a
videopool run directory, without TensorFlow.

Example::

    videopool import-tf gatednetvladLF/model.ckpt-310001 --model gated_netvlad_256 --out runs/willow \\
        --set iterations=300
    videopool evaluate runs/willow --data 'd/validate*.tfrecord' --sampling random

The sizes (K, H, V, M, NeXtVLAD's G and λ, the SE reduction) and the optional parts are read from the variables;
``--set`` gives what they cannot tell, with the reference code's flag names (``--set beforeNorm=true``,
``--set num_nonlocal_block=2``, ``--set iterations=300``) or videopool keys. Every variable must find a parameter
and every parameter a variable: otherwise the command lists them and exits 2 (optimizer slots and global_step are
ignored and counted). The run holds ``last.safetensors`` and ``config.yaml``; ``evaluate``, ``predict``,
``export`` and ``train --init-from`` use it. docs/import-tf.md has the flag table.
"""

from __future__ import annotations

import argparse
import os


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("import-tf", help="a TF1 checkpoint (WILLOW, NeXtVLAD, non-local NetVLAD) as a run",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="CHECKPOINT_PREFIX",
                   help="TF checkpoint prefix (model.ckpt-1000, beside .index and .data-*), its .index file, or a "
                        "directory with a TF 'checkpoint' state file")
    p.add_argument("--model", required=True, help="named configuration of the same family (`videopool models`), "
                                                  "e.g. gated_netvlad_256, gated_netfv_128, nextvlad_k128_g8, "
                                                  "nl_netvlad_128")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to create")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a reference flag (iterations, moe_prob_gating, beforeNorm, num_nonlocal_block, ...) or a "
                        "videopool model/training key, e.g. --set l2_normalize_frames=false")
    p.add_argument("--rgb-eigenvalues", metavar="NPY",
                   help="NeXtVLAD only: linrongc's yt8m_pca/eigenvals.npy; folds its rgb pre-processing "
                        "(x - 4/512) * (sqrt(e) + 1e-4) into the model, so that it takes the features as stored")
    p.add_argument("--allow-unused", action="store_true",
                   help="drop checkpoint variables that no parameter takes instead of refusing (they are listed)")
    p.set_defaults(func=run)


def _check_keys(rest: dict) -> None:
    """Each key that is not a reference flag must be a training field or a model key (before anything is built)."""
    from videopool.core.errors import UserError
    from videopool.core.schema import ConfigError
    from videopool.models.overrides import key_hint, resolve_key
    from videopool.models.tf_import import REFERENCE_FLAGS
    from videopool.training.config import field_names

    for key in rest:
        if key in field_names():
            continue
        try:
            resolve_key(key)
        except ConfigError:
            raise UserError(f"--set {key}: not a reference flag nor a videopool key"
                            f"{key_hint(key, [*REFERENCE_FLAGS, *field_names()])} (reference flags: "
                            f"{', '.join(sorted(REFERENCE_FLAGS))}; see docs/import-tf.md)") from None


def _load_eigenvalues(path: str):
    import numpy as np

    from videopool.core.errors import UserError

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UserError(f"--rgb-eigenvalues {path!r} is not a readable .npy file ({err}); give linrongc's "
                        "yt8m_pca/eigenvals.npy") from None


def run(args) -> int:
    from videopool.core.errors import UserError
    from videopool.core.files import atomic_path
    from videopool.data.tf_checkpoint import TFCheckpoint
    from videopool.models import create_model, get_model_config, get_recipe, resolve_config
    from videopool.models.checkpoint import save_weights
    from videopool.models.tf_import import (check_report, fold_rgb_unwhitening, infer_overrides, reference_settings,
                                            reference_training, tf_state_dict)
    from videopool.training.config import parse_set_arguments, resolve_train_config, save_yaml
    from videopool.training.resume import has_checkpoint

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out {args.out!r} is an existing file; give a new run directory")
    if has_checkpoint(args.out):
        raise UserError(f"--out {args.out!r} already holds a run; choose another --out")
    translated, rest = reference_settings(parse_set_arguments(args.set))
    _check_keys(rest)
    base = get_model_config(args.model)
    checkpoint = TFCheckpoint(args.checkpoint)
    shapes = checkpoint.shapes()
    inferred = infer_overrides(shapes, base)
    layers = [(f"recipe of {args.model!r}", dict(get_recipe(args.model))),
              (f"variables of {checkpoint.prefix}", inferred),
              ("reference flags", translated),
              ("command line", {**rest, "out": args.out})]
    config = resolve_train_config(args.model, layers)
    reference = reference_training(resolve_config(args.model, num_classes=config.num_classes,
                                                  **config.model_overrides), shapes)
    # the reference's frame sampling, unless --set chose otherwise
    config = resolve_train_config(args.model, layers[:2] + [("reference behaviour", reference)] + layers[2:])
    model_config = resolve_config(args.model, num_classes=config.num_classes, **config.model_overrides)
    model = create_model(model_config).eval()
    state, report = tf_state_dict(model, model_config, shapes, checkpoint.read)
    check_report(report, args.allow_unused, args.model)
    if args.rgb_eigenvalues:
        fold_rgb_unwhitening(state, model_config, _load_eigenvalues(args.rgb_eigenvalues))
    model.load_state_dict(state, strict=True)

    entry = checkpoint.entries.get("global_step")
    step = int(checkpoint.read("global_step")) if entry is not None and entry.shape == () else 0
    info = {
        "format": "videopool-checkpoint-1",
        "model_config": model_config.to_dict(),
        "train_config": config.to_dict(),
        "num_classes": model_config.num_classes,
        "feature_names": list(model_config.modalities),
        "step": step, "examples_seen": 0, "epoch": 0, "metrics": {},
        "imported_from": {"checkpoint": os.path.abspath(checkpoint.prefix), "variables": len(report.loaded),
                          "ignored": len(report.ignored), "dropped": report.unused if args.allow_unused else [],
                          "rgb_eigenvalues": os.path.abspath(args.rgb_eigenvalues) if args.rgb_eigenvalues else None},
    }
    os.makedirs(args.out, exist_ok=True)
    with atomic_path(os.path.join(args.out, "config.yaml")) as tmp:
        save_yaml(config, tmp)
    save_weights(os.path.join(args.out, "last.safetensors"), model.state_dict(), info)
    sizes = f"K={model_config.pooling.cluster_size}, H={model_config.hidden.size}, V={model_config.num_classes}"
    print(f"imported {len(report.loaded)} variables of {checkpoint.prefix} as {args.model} ({sizes}, "
          f"{model_config.pooling.type}) -> {os.path.join(args.out, 'last.safetensors')}; ignored "
          f"{len(report.ignored)} optimizer slot(s) / global_step"
          + (f"; dropped {len(report.unused)} unused: {', '.join(report.unused)}" if report.unused else ""))
    return 0
