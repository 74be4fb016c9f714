"""videopool: learnable pooling for large-scale multi-label video classification.

Data flows one way::

    TFRecord shards -> Video records -> frames + mask -> pooled vectors
        -> fused vector -> gated hidden -> class scores
"""

__version__ = "0.1.0"
