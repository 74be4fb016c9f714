"""Stacked LSTM / GRU pooling: the final recurrent state of the real frames (WILLOW, TF1 starter code).

TensorFlow's cells keep one bias per layer (LSTM ``[4H]``, GRU gates ``[2H]`` + candidate ``[H]``) where
``nn.LSTM``/``nn.GRU`` keep two (``bias_ih`` and ``bias_hh``). To keep the trainable parameter count equal to the
reference (TF's ``BasicLSTMCell``/``GRUCell``) while staying on PyTorch's fused (and cuDNN) kernels, ``bias_hh_l*`` is turned from a
parameter into a constant, non-persistent buffer and ``bias_ih_l*`` is the one trainable bias:

* LSTM: the constant ``bias_hh`` holds TF's ``forget_bias`` (1.0) in the forget-gate slice and zeros elsewhere,
  which is exactly how ``BasicLSTMCell`` adds it at run time; the trainable bias starts at zero.
* GRU: the trainable bias starts at 1.0 for the reset and update gates and 0 for the candidate (TF ``GRUCell``).

Weights use TF's Glorot-uniform initialisation over the concatenated ``[D + H, gates·H]`` kernel. Porting a TF
checkpoint: split each TF kernel into its input rows (→ ``weight_ih``) and state rows (→ ``weight_hh``),
transpose, and reorder gate blocks (TF LSTM i, j, f, o → PyTorch i, f, g=j, o; TF GRU gates r, u + candidate →
PyTorch r, z=u, n). PyTorch's GRU applies the reset gate *after* the recurrent matmul of the candidate
(``r ⊙ (W_hn h)``) while TF's ``GRUCell`` applies it before (``W_hc (r ⊙ h)``), so TF GRU weights do not
reproduce TF outputs exactly; the LSTM mapping is exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from videopool.layers.registry import register_pooling
from videopool.layers.base import FramePooling

_OUTPUT_STATES = ("all", "last_h")


def _make_hidden_bias_constant(rnn: nn.RNNBase, constant: Tensor) -> None:
    """Replace every ``bias_hh_l*`` parameter of ``rnn`` by a non-trainable, non-persistent buffer ``constant``."""
    for name in rnn._flat_weights_names:
        if name.startswith("bias_hh_l"):
            delattr(rnn, name)
            rnn.register_buffer(name, constant.clone(), persistent=False)
    rnn._init_flat_weights()  # refresh the cached weight list the fused kernel reads


def _tf_glorot_(rnn: nn.RNNBase, layer: int, blocks: list[tuple[int, int]]) -> None:
    """Glorot-uniform over TF's kernel ``[in + H, width]`` for each gate block ``(first_row, width)``."""
    weight_ih = getattr(rnn, f"weight_ih_l{layer}")
    weight_hh = getattr(rnn, f"weight_hh_l{layer}")
    fan_in = weight_ih.shape[1] + weight_hh.shape[1]
    with torch.no_grad():
        for start, width in blocks:
            bound = math.sqrt(6.0 / (fan_in + width))
            weight_ih[start : start + width].uniform_(-bound, bound)
            weight_hh[start : start + width].uniform_(-bound, bound)


class _RecurrentPooling(FramePooling):
    """Shared forward: run the stacked RNN over the real frames (packed by mask length), return final states."""

    rnn: nn.RNNBase

    def __init__(self, feature_size: int, hidden_size: int, num_layers: int, output_states: str) -> None:
        super().__init__()
        if output_states not in _OUTPUT_STATES:
            raise ValueError(f"output_states must be one of {list(_OUTPUT_STATES)}, got {output_states!r}")
        self.feature_size = feature_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.output_states = output_states

    def _run(self, frames: Tensor, mask: Tensor | None) -> tuple[Tensor | tuple[Tensor, Tensor], Tensor | None]:
        """The final states, computed in float32 whatever the surrounding precision (see :meth:`_recur`)."""
        if mask is None:
            return self._recur(frames), None
        lengths = mask.sum(1)
        prefix = torch.arange(mask.shape[1], device=mask.device) < lengths.unsqueeze(1)
        if not torch.equal(mask, prefix):
            raise ValueError(
                f"{type(self).__name__} needs each video's real frames first (mask True then False); "
                "got a mask with holes"
            )
        # A video without frames still needs one step for packing; its output is zeroed by the caller.
        packed = pack_padded_sequence(frames, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
        return self._recur(packed), lengths == 0

    def _recur(self, inputs: Tensor | PackedSequence) -> Tensor | tuple[Tensor, Tensor]:
        """``self.rnn(inputs)``'s final state, with inputs, weights, gates and state in float32 (float64 for a
        float64 input), cast back to the input's dtype.

        Why: in a bf16 model the recurrence would otherwise run (partly) in bf16 — CPU autocast sends an
        unpacked ``nn.LSTM`` to the bf16 oneDNN kernel (state and gates in bf16), and bf16 master weights
        (``BF16MasterWeights``) make even the packed kernel mix bf16 into the gate matmuls — and the state
        accumulated over hundreds of steps then carries bf16's 3 significant digits of rounding at every
        step. CUDA autocast keeps RNNs in float32 for the same reason; this does it on every device.
        """
        dtype = inputs.data.dtype
        wide = torch.float64 if dtype == torch.float64 else torch.float32  # a float64 model stays float64
        if isinstance(inputs, PackedSequence):
            inputs = inputs._replace(data=inputs.data.to(wide))
        else:
            inputs = inputs.to(wide)
        low = {name: getattr(self.rnn, name) for name in self.rnn._flat_weights_names
               if getattr(self.rnn, name).dtype != wide}
        with torch.autocast(inputs.data.device.type, enabled=False):
            if low:  # bf16 master weights / a bf16 copy: run on float32 casts (gradients flow back to them)
                state = functional_call(self.rnn, {name: t.to(wide) for name, t in low.items()}, (inputs,))[1]
            else:
                state = self.rnn(inputs)[1]
        if isinstance(state, tuple):
            return tuple(s.to(dtype) for s in state)
        return state.to(dtype)

    @staticmethod
    def _zero_empty(output: Tensor, empty: Tensor | None) -> Tensor:
        return output if empty is None else output.masked_fill(empty.unsqueeze(1), 0.0)


@register_pooling("lstm")
class LSTMPooling(_RecurrentPooling):
    """Stacked LSTM (TF ``BasicLSTMCell`` semantics) over the real frames; returns the final states.

    Per layer ``l``: ``(c_l, h_l)`` after the last real frame of each video (``pack_padded_sequence`` with the
    mask lengths, like ``dynamic_rnn(sequence_length=num_frames)``).

    * ``output_states="all"``: ``[c_1, h_1, c_2, h_2, …]`` (WILLOW, ``state_is_tuple=False``) → ``2·L·H``.
    * ``output_states="last_h"``: ``h_L`` of the last layer (TF1 starter code) → ``H``.

    Shapes: ``frames [B, N, D]``, ``mask [B, N]`` (real frames first) → ``[B, output_size]``. Trainable
    parameters per layer: ``(D_in + H)·4H + 4H`` (as TF counts them; D_in = D for layer 1, H above).
    """

    def __init__(
        self,
        feature_size: int,
        hidden_size: int = 1024,
        num_layers: int = 2,
        output_states: str = "all",
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__(feature_size, hidden_size, num_layers, output_states)
        self.forget_bias = forget_bias
        self.rnn = nn.LSTM(feature_size, hidden_size, num_layers=num_layers, batch_first=True)
        constant = torch.zeros(4 * hidden_size)
        constant[hidden_size : 2 * hidden_size] = forget_bias  # PyTorch gate order: i, f, g, o
        for layer in range(num_layers):
            _tf_glorot_(self.rnn, layer, [(0, 4 * hidden_size)])
            nn.init.zeros_(getattr(self.rnn, f"bias_ih_l{layer}"))
        _make_hidden_bias_constant(self.rnn, constant)
        self.output_size = (2 * num_layers if output_states == "all" else 1) * hidden_size

    def pool(self, frames: Tensor, mask: Tensor | None) -> Tensor:
        (hidden, cell), empty = self._run(frames, mask)
        if self.output_states == "last_h":
            output = hidden[-1]
        else:
            output = torch.stack([cell, hidden], dim=1).permute(2, 0, 1, 3).reshape(hidden.shape[1], -1)
        return self._zero_empty(output, empty)


@register_pooling("gru")
class GRUPooling(_RecurrentPooling):
    """Stacked GRU over the real frames; returns the final hidden states.

    * ``output_states="all"``: ``[h_1, h_2, …]`` (WILLOW) → ``L·H``.
    * ``output_states="last_h"``: ``h_L`` → ``H``.

    Shapes: ``frames [B, N, D]``, ``mask [B, N]`` (real frames first) → ``[B, output_size]``. Trainable
    parameters per layer: ``(D_in + H)·3H + 3H`` (as TF counts them). The reset gate follows PyTorch's convention
    (see the module docstring).
    """

    def __init__(
        self, feature_size: int, hidden_size: int = 1024, num_layers: int = 2, output_states: str = "all"
    ) -> None:
        super().__init__(feature_size, hidden_size, num_layers, output_states)
        self.rnn = nn.GRU(feature_size, hidden_size, num_layers=num_layers, batch_first=True)
        for layer in range(num_layers):
            # PyTorch gate order r, z, n: TF initialises the two gates as one kernel and the candidate apart.
            _tf_glorot_(self.rnn, layer, [(0, 2 * hidden_size), (2 * hidden_size, hidden_size)])
            bias = getattr(self.rnn, f"bias_ih_l{layer}")
            with torch.no_grad():
                bias[: 2 * hidden_size].fill_(1.0)
                bias[2 * hidden_size :].zero_()
        _make_hidden_bias_constant(self.rnn, torch.zeros(3 * hidden_size))
        self.output_size = (num_layers if output_states == "all" else 1) * hidden_size

    def pool(self, frames: Tensor, mask: Tensor | None) -> Tensor:
        hidden, empty = self._run(frames, mask)
        if self.output_states == "last_h":
            output = hidden[-1]
        else:
            output = hidden.permute(1, 0, 2).reshape(hidden.shape[1], -1)
        return self._zero_empty(output, empty)
