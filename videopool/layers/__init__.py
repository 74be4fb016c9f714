"""Layers: pooling over frames, fusion of modalities, gating and classifiers.

Every pooling layer takes ``frames [B, N, D]`` and an optional ``mask [B, N]``
(True = real frame) and returns ``[B, output_size]``.
"""

from videopool._lazy import lazy_exports

_EXPORTS = {
    "register_pooling": "registry",
    "create_pooling": "registry",
    "list_poolings": "registry",
    "get_pooling_class": "registry",
    "l2_normalize": "norm",
    "MaskedBatchNorm1d": "norm",
    "AveragePooling": "simple",
    "MaxPooling": "simple",
    "NetVLAD": "netvlad",
    "NetRVLAD": "netrvlad",
    "NetFV": "netfv",
    "SoftDBoW": "soft_dbow",
    "GatedSoftDBoW": "soft_dbow",
    "DBoF": "dbof",
    "LSTMPooling": "recurrent",
    "GRUPooling": "recurrent",
    "ContextGating": "gating",
    "GatedLinearUnit": "gating",
    "MoEClassifier": "classifiers",
    "LogisticClassifier": "classifiers",
    "ConcatFusion": "fusion",
    "FCConcatFusion": "fusion",
    "MFBFusion": "fusion",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
