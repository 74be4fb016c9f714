"""Layers: pooling over frames, fusion of modalities, the hidden layer, gating and classifier heads.

Every pooling layer takes ``frames [B, N, D]`` and an optional ``mask [B, N]`` (True = real frame) and returns
``[B, output_size]``; poolings, fusions, gatings and heads are built by name (``create_pooling``, ``make_fusion``,
``make_gating``, ``make_head``) so that a configuration names them as data.
"""

from videopool.layers.activations import ACTIVATIONS, make_activation
from videopool.layers.affine import FrameAffine
from videopool.layers.attention_clusters import AttentionClusters
from videopool.layers.attention_vlad import (
    AttentionNetVLAD, MaskedMultiHeadAttention, TransformerEncoder, TransformerNetVLAD,
)
from videopool.layers.base import FramePooling
from videopool.layers.dbof import DBoF
from videopool.layers.fusion import FUSIONS, ConcatFusion, FCConcatFusion, MFBFusion, make_fusion
from videopool.layers.gating import GATINGS, ContextGating, GatedLinearUnit, SEContextGating, make_gating
from videopool.layers.heads import HEADS, LogisticClassifier, MoEClassifier, make_head
from videopool.layers.hidden import HiddenLayer
from videopool.layers.modality import ModalityPooling
from videopool.layers.netfv import NetFV
from videopool.layers.netrvlad import NetRVLAD
from videopool.layers.netvlad import NetVLAD
from videopool.layers.nextvlad import NeXtVLAD
from videopool.layers.nonlocal_vlad import NonLocalBlock, NonLocalNetVLAD
from videopool.layers.norm import BN_EPS, BN_MOMENTUM, MaskedBatchNorm1d, l2_normalize
from videopool.layers.recurrent import GRUPooling, LSTMPooling
from videopool.layers.registry import create_pooling, get_pooling_class, list_poolings, register_pooling
from videopool.layers.second_order_vlad import ClusterWhitening, SecondOrderNetVLAD
from videopool.layers.simple import SimplePooling
from videopool.layers.soft_assignment import SoftAssignmentPooling
from videopool.layers.soft_dbow import GatedSoftDBoW, SoftDBoW

__all__ = [
    "ACTIVATIONS", "BN_EPS", "BN_MOMENTUM", "FUSIONS", "GATINGS", "HEADS", "AttentionClusters", "AttentionNetVLAD",
    "ClusterWhitening", "ConcatFusion", "ContextGating", "DBoF", "MaskedMultiHeadAttention", "SecondOrderNetVLAD",
    "TransformerEncoder", "TransformerNetVLAD",
    "FCConcatFusion", "FramePooling", "FrameAffine", "GRUPooling", "GatedLinearUnit", "GatedSoftDBoW", "HiddenLayer",
    "LSTMPooling", "LogisticClassifier", "MFBFusion", "MaskedBatchNorm1d", "ModalityPooling", "MoEClassifier",
    "NeXtVLAD", "NetFV", "NetRVLAD", "NetVLAD", "NonLocalBlock", "NonLocalNetVLAD", "SEContextGating",
    "SimplePooling", "SoftAssignmentPooling", "SoftDBoW", "create_pooling",
    "get_pooling_class", "l2_normalize", "list_poolings", "make_activation", "make_fusion", "make_gating",
    "make_head", "register_pooling",
]  # fmt: skip
