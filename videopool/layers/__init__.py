"""Layers: pooling over frames, fusion of modalities, the hidden layer, gating and classifier heads.

Every pooling layer takes ``frames [B, N, D]`` and an optional ``mask [B, N]`` (True = real frame) and returns
``[B, output_size]``; poolings, fusions, gatings and heads are built by name (``create_pooling``, ``make_fusion``,
``make_gating``, ``make_head``) so that a configuration names them as data.
"""

from videopool.layers.affine import FrameAffine
from videopool.layers.dbof import DBoF
from videopool.layers.fusion import ConcatFusion, FCConcatFusion, MFBFusion
from videopool.layers.gating import ContextGating, GatedLinearUnit
from videopool.layers.heads import LogisticClassifier, MoEClassifier
from videopool.layers.netfv import NetFV
from videopool.layers.netrvlad import NetRVLAD
from videopool.layers.netvlad import NetVLAD
from videopool.layers.norm import MaskedBatchNorm1d, l2_normalize
from videopool.layers.recurrent import GRUPooling, LSTMPooling
from videopool.layers.registry import create_pooling, get_pooling_class, list_poolings, register_pooling
from videopool.layers.simple import AveragePooling, MaxPooling
from videopool.layers.soft_dbow import GatedSoftDBoW, SoftDBoW

__all__ = [
    "AveragePooling", "ConcatFusion", "ContextGating", "DBoF", "FCConcatFusion", "FrameAffine", "GRUPooling",
    "GatedLinearUnit", "GatedSoftDBoW", "LSTMPooling", "LogisticClassifier", "MFBFusion", "MaskedBatchNorm1d",
    "MaxPooling", "MoEClassifier", "NetFV", "NetRVLAD", "NetVLAD", "SoftDBoW", "create_pooling",
    "get_pooling_class", "l2_normalize", "list_poolings", "register_pooling",
]  # fmt: skip
