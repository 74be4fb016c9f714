"""The built-in demo data: a documented generative model of YouTube-8M-like videos (``world``), its class names
(``names``) and the writer of the demo shards (``dataset``). Deterministic for a seed and sizes."""

from videopool.demo.dataset import make_demo_data

__all__ = ["make_demo_data"]
