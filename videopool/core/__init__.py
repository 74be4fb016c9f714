"""Runtime helpers every floor may use: distributed context (``distributed``), device and precision choice
(``precision``), malloc tuning (``malloc``), atomic file writes (``files``), seeding and RNG state (``rng``) and
the strict configuration parser (``schema``). Nothing here imports the rest of videopool.

Import the submodules directly (``from videopool.core.precision import PRECISIONS``): this ``__init__`` re-exports
nothing on purpose, because the command line's argument parsers read choice lists from here and must not pay
for importing torch (measured: ``videopool --help`` 0.06 s without it, 1.8 s with it).
"""
