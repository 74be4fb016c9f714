"""Slow, obviously-correct float64 references for the pooling layers, written from the formulas in spec §4.

Every function takes ``videos``: a list of ``[n_i, D]`` float64 arrays holding only the *real* frames of each
video (so padding cannot influence a reference), and ``params``: the layer's state dict as float64 numpy
arrays. Loops run explicitly over videos, frames, clusters and dimensions; speed is not a goal.
"""

from __future__ import annotations

import math

import numpy as np
import torch

BN_EPS = 1e-3


def params_of(module: torch.nn.Module) -> dict[str, np.ndarray]:
    """All parameters and buffers (persistent or not) as float64 numpy arrays."""
    named = dict(module.named_parameters())
    named.update(dict(module.named_buffers()))
    return {name: t.detach().double().numpy().copy() for name, t in named.items() if t is not None}


def randomize_batch_norms(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Give every batch norm non-trivial running statistics, scale and shift, so BN is really exercised."""
    for sub in module.modules():
        if isinstance(sub, torch.nn.BatchNorm1d):
            size = sub.num_features
            with torch.no_grad():
                sub.running_mean.copy_(torch.randn(size, generator=generator) * 0.3)
                sub.running_var.copy_(torch.rand(size, generator=generator) * 1.5 + 0.5)
                sub.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                sub.bias.copy_(torch.randn(size, generator=generator) * 0.2)


def l2(vector: list[float] | np.ndarray) -> np.ndarray:
    total = 0.0
    for value in vector:
        total += value * value
    scale = 1.0 / math.sqrt(max(total, 1e-12))
    return np.array([value * scale for value in vector])


def softmax(logits: np.ndarray) -> np.ndarray:
    top = max(logits)
    exps = [math.exp(value - top) for value in logits]
    total = sum(exps)
    return np.array([value / total for value in exps])


def sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def project(frame: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``frame [D] @ weights [D, K]`` by explicit loops."""
    rows, cols = weights.shape
    return np.array([sum(frame[d] * weights[d, k] for d in range(rows)) for k in range(cols)])


def batch_norm(rows_per_video: list[list[np.ndarray]], params: dict, prefix: str, training: bool) -> list:
    """BN per column. Training: biased statistics over every real row of every video; eval: running stats."""
    gamma, beta = params[f"{prefix}.weight"], params[f"{prefix}.bias"]
    columns = len(gamma)
    if training:
        all_rows = [row for rows in rows_per_video for row in rows]
        mean = [sum(row[c] for row in all_rows) / len(all_rows) for c in range(columns)]
        var = [sum((row[c] - mean[c]) ** 2 for row in all_rows) / len(all_rows) for c in range(columns)]
    else:
        mean, var = params[f"{prefix}.running_mean"], params[f"{prefix}.running_var"]
    return [
        [
            np.array([(row[c] - mean[c]) / math.sqrt(var[c] + BN_EPS) * gamma[c] + beta[c] for c in range(columns)])
            for row in rows
        ]
        for rows in rows_per_video
    ]


def batch_statistics(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and Bessel-corrected variance per column (what PyTorch feeds the running statistics)."""
    count = len(rows)
    mean = np.array([sum(row[c] for row in rows) / count for c in range(len(rows[0]))])
    var = np.array([sum((row[c] - mean[c]) ** 2 for row in rows) / (count - 1) for c in range(len(rows[0]))])
    return mean, var


def cluster_logits(videos, params, training, weights="cluster_weights", bn="cluster_bn", bias="cluster_biases"):
    logits = [[project(frame, params[weights]) for frame in video] for video in videos]
    if f"{bn}.weight" in params:
        return batch_norm(logits, params, bn, training)
    return [[row + params[bias] for row in rows] for rows in logits]


def soft_assign(videos, params, training) -> list[list[np.ndarray]]:
    """``a_{n,k} = softmax_k(BN(x_n W_a))`` per real frame."""
    return [[softmax(row) for row in rows] for rows in cluster_logits(videos, params, training)]


def vlad_matrix(video, assignment, centroids) -> np.ndarray:
    """``R[d, k] = Σ_n a_{n,k} (x_{n,d} − C_{d,k})`` (``centroids`` None: no subtraction)."""
    dims, clusters = video.shape[1], len(assignment[0])
    out = np.zeros((dims, clusters))
    for d in range(dims):
        for k in range(clusters):
            for n in range(len(video)):
                centre = 0.0 if centroids is None else centroids[d, k]
                out[d, k] += assignment[n][k] * (video[n][d] - centre)
    return out


def intra_then_global(matrix: np.ndarray) -> np.ndarray:
    """L2 over D for each cluster column, flatten feature-major (d·K + k), global L2."""
    dims, clusters = matrix.shape
    normed = np.zeros_like(matrix)
    for k in range(clusters):
        column = l2([matrix[d, k] for d in range(dims)])
        for d in range(dims):
            normed[d, k] = column[d]
    return l2([normed[d, k] for d in range(dims) for k in range(clusters)])


def netvlad(videos, params, training=False) -> list[np.ndarray]:
    assignments = soft_assign(videos, params, training)
    return [
        intra_then_global(vlad_matrix(video, a, params["cluster_weights2"][0])) for video, a in zip(videos, assignments)
    ]


def netrvlad(videos, params, training=False) -> list[np.ndarray]:
    assignments = soft_assign(videos, params, training)
    return [intra_then_global(vlad_matrix(video, a, None)) for video, a in zip(videos, assignments)]


def netfv(videos, params, training=False, coupling_factor=None, second_order_intra_norm=False) -> list[np.ndarray]:
    """Spec §4.3, written per element: first order uses (x − c)/σ, second order ((x − c)² / σ² − 1)."""
    centroids = (
        params["cluster_weights"] * coupling_factor if coupling_factor is not None else params["cluster_weights2"][0]
    )
    sigma = params["covar_weights"] ** 2 + 1e-6
    outputs = []
    for video, a in zip(videos, soft_assign(videos, params, training)):
        dims, clusters = sigma.shape
        first = np.zeros((dims, clusters))
        second = np.zeros((dims, clusters))
        for d in range(dims):
            for k in range(clusters):
                for n in range(len(video)):
                    diff = video[n][d] - centroids[d, k]
                    first[d, k] += a[n][k] * diff / sigma[d, k]
                    second[d, k] += a[n][k] * (diff * diff / sigma[d, k] ** 2 - 1.0)
        if second_order_intra_norm:
            second_out = intra_then_global(second)
        else:
            second_out = l2([second[d, k] for d in range(dims) for k in range(clusters)])
        outputs.append(np.concatenate([intra_then_global(first), second_out]))
    return outputs


def soft_dbow(videos, params, training=False, max_pool=False) -> list[np.ndarray]:
    outputs = []
    for a in soft_assign(videos, params, training):
        clusters = len(a[0])
        histogram = l2([sum(row[k] for row in a) for k in range(clusters)])
        if max_pool:
            histogram = np.concatenate([histogram, l2([max(row[k] for row in a) for k in range(clusters)])])
        outputs.append(histogram)
    return outputs


def gated_soft_dbow(videos, params, training=False) -> list[np.ndarray]:
    assignments = soft_assign(videos, params, training)
    clusters = len(assignments[0][0])
    sums = [np.array([sum(row[k] for row in a) for k in range(clusters)]) for a in assignments]
    maxima = [l2([max(row[k] for row in a) for k in range(clusters)]) for a in assignments]
    gates = [project(project(m, params["dim_red"]), params["cluster_weights_2"]) for m in maxima]
    if "cluster_bn_2.weight" in params:
        gates = [rows[0] for rows in batch_norm([[g] for g in gates], params, "cluster_bn_2", training)]
    else:
        gates = [g + params["cluster_biases_2"] for g in gates]
    return [l2([sigmoid(g[k]) * s[k] for k in range(clusters)]) for g, s in zip(gates, sums)]


ACTIVATIONS = {
    "relu": lambda v: max(v, 0.0),
    "relu6": lambda v: min(max(v, 0.0), 6.0),
    "sigmoid": sigmoid,
    "none": lambda v: v,
}


def dbof(videos, params, training=False, activation="sigmoid", pooling="max") -> list[np.ndarray]:
    outputs = []
    act = ACTIVATIONS[activation]
    for rows in cluster_logits(videos, params, training):
        hidden = [[act(value) for value in row] for row in rows]
        clusters = len(hidden[0])
        mean = [sum(row[k] for row in hidden) / len(hidden) for k in range(clusters)]
        top = [max(row[k] for row in hidden) for k in range(clusters)]
        if pooling == "max":
            outputs.append(np.array(top))
        elif pooling == "average":
            outputs.append(np.array(mean))
        else:
            outputs.append(np.concatenate([l2(mean), l2(top)]))
    return outputs


def average(videos) -> list[np.ndarray]:
    return [np.array([sum(f[d] for f in v) / len(v) for d in range(v.shape[1])]) for v in videos]


def maximum(videos) -> list[np.ndarray]:
    return [np.array([max(f[d] for f in v) for d in range(v.shape[1])]) for v in videos]


def _matvec(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    return np.array([sum(matrix[i, j] * vector[j] for j in range(len(vector))) for i in range(matrix.shape[0])])


def lstm_states(videos, params, num_layers, hidden_size, forget_bias=1.0) -> list[list[tuple]]:
    """TF ``BasicLSTMCell`` stack: f = σ(W_f [x, h] + b_f + forget_bias), c' = f c + i tanh(j), h' = o tanh(c').

    Gate blocks of the PyTorch weights are read in PyTorch order (i, f, g, o); the one trainable bias per layer is
    ``bias_ih``. Returns per video the final ``(c, h)`` of every layer.
    """
    size = hidden_size
    results = []
    for video in videos:
        inputs = [frame for frame in video]
        finals = []
        for layer in range(num_layers):
            w_in, w_state = params[f"rnn.weight_ih_l{layer}"], params[f"rnn.weight_hh_l{layer}"]
            bias = params[f"rnn.bias_ih_l{layer}"]
            c, h = np.zeros(size), np.zeros(size)
            outputs = []
            for x in inputs:
                pre = _matvec(w_in, x) + _matvec(w_state, h) + bias
                c_new, h_new = np.zeros(size), np.zeros(size)
                for u in range(size):
                    i = sigmoid(pre[u])
                    f = sigmoid(pre[size + u] + forget_bias)
                    g = math.tanh(pre[2 * size + u])
                    o = sigmoid(pre[3 * size + u])
                    c_new[u] = f * c[u] + i * g
                    h_new[u] = o * math.tanh(c_new[u])
                c, h = c_new, h_new
                outputs.append(h)
            finals.append((c, h))
            inputs = outputs
        results.append(finals)
    return results


def gru_states(videos, params, num_layers, hidden_size) -> list[list[np.ndarray]]:
    """GRU stack (PyTorch convention, single bias): r, z = σ(W x + U h + b), n = tanh(W_n x + b_n + r ⊙ (U_n h)),
    h' = (1 − z) n + z h. Returns per video the final h of every layer."""
    size = hidden_size
    results = []
    for video in videos:
        inputs = [frame for frame in video]
        finals = []
        for layer in range(num_layers):
            w_in, w_state = params[f"rnn.weight_ih_l{layer}"], params[f"rnn.weight_hh_l{layer}"]
            bias = params[f"rnn.bias_ih_l{layer}"]
            h = np.zeros(size)
            outputs = []
            for x in inputs:
                from_input = _matvec(w_in, x) + bias
                from_state = _matvec(w_state, h)
                h_new = np.zeros(size)
                for u in range(size):
                    r = sigmoid(from_input[u] + from_state[u])
                    z = sigmoid(from_input[size + u] + from_state[size + u])
                    n = math.tanh(from_input[2 * size + u] + r * from_state[2 * size + u])
                    h_new[u] = (1.0 - z) * n + z * h[u]
                h = h_new
                outputs.append(h)
            finals.append(h)
            inputs = outputs
        results.append(finals)
    return results


def pad_videos(videos: list[np.ndarray], length: int, generator: torch.Generator, garbage: float = 5.0):
    """Stack real frames first, then random garbage rows; returns float64 ``frames [B, length, D]`` and ``mask``."""
    dims = videos[0].shape[1]
    frames = torch.randn(len(videos), length, dims, generator=generator, dtype=torch.float64) * garbage
    mask = torch.zeros(len(videos), length, dtype=torch.bool)
    for b, video in enumerate(videos):
        frames[b, : len(video)] = torch.from_numpy(video)
        mask[b, : len(video)] = True
    return frames, mask


def random_videos(lengths: list[int], dims: int, generator: torch.Generator) -> list[np.ndarray]:
    return [torch.randn(n, dims, generator=generator, dtype=torch.float64).numpy() for n in lengths]


def build_layer(cls, dims: int, clusters: int, lengths: list[int], seed: int = 0, **kwargs):
    """A float64 ``cls(dims, clusters, **kwargs)`` with randomised BNs, plus videos of ``lengths`` and their padded
    ``frames``/``mask`` (two garbage frames past the longest video): ``(layer, videos, frames, mask)``."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layer = cls(dims, clusters, **kwargs).double()
    randomize_batch_norms(layer, generator)
    videos = random_videos(lengths, dims, generator)
    frames, mask = pad_videos(videos, max(lengths) + 2, generator)
    return layer, videos, frames, mask
