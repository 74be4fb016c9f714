"""The generative model behind the demo dataset (see ``docs/demo-data.md``).

Classes are ``P`` verticals (``"Music"``) and ``L`` leaves (``"Music/Guitar"``). A video
gets a few leaves; a vertical is on exactly when one of its leaves is. Each leaf leaves
*evidence* in some contiguous, 5-second-aligned spans of the video, by one of four
mechanisms:

* ``visual``: its own rgb prototype is added to the frames of the span;
* ``audio``: its own audio prototype is added to the audio of the span;
* ``distribution``: half of the span's frames get ``+d``, the other half ``-d`` (a class
  direction ``d``): the video's mean frame does not move, only the frame distribution does;
* ``conjunction``: an rgb motif ``W_i`` and an audio motif ``B_j`` are added on the same
  span. Each motif is shared by several conjunction classes and also appears alone as a
  decoy, so only the *pair* identifies the class; the label is on whenever both motifs
  are present anywhere in the video.

Frames live in small latent spaces (``rgb_latent``, ``audio_latent`` dims):
``z_t = scene + noise_t + evidence_t`` with a per-video scene offset, then a fixed random
orthonormal projection maps them to ``rgb_size`` / ``audio_size`` dims, a little
full-dimensional noise is added and the result is quantized like YouTube-8M.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from videopool.demo.names import VERTICALS, leaf_name

MECHANISMS = ("visual", "audio", "distribution", "conjunction")
# Mechanism of the leaf of frequency rank r is _MECHANISM_CYCLE[r % 20]: 6 visual, 4 audio,
# 5 distribution and 5 conjunction per 20, interleaved so frequent and rare leaves mix them.
_MECHANISM_CYCLE = (0, 2, 1, 3, 0, 2, 3, 1, 0, 2, 0, 3, 1, 2, 0, 3, 1, 2, 0, 3)
SEGMENT_FRAMES = 5


@dataclass(frozen=True)
class DemoConfig:
    """Every knob of the generative model; stored in the dataset's ``manifest.json``."""

    num_classes: int = 256
    rgb_size: int = 1024
    audio_size: int = 128
    rgb_latent: int = 96
    audio_latent: int = 48
    min_frames: int = 60
    max_frames: int = 300
    frequency_exponent: float = 0.5  # leaf of rank r is drawn with weight (r + 1) ** -exponent
    extra_leaves_mean: float = 0.5  # leaves per video = 1 + Poisson(this), at most max_leaves
    max_leaves: int = 5
    theme_probability: float = 0.75  # a leaf is drawn from the video's vertical with this probability
    decoys_mean: float = 0.6  # lone conjunction motifs per video (Poisson)
    spans_max: int = 2  # evidence spans per leaf: 1 .. spans_max
    span_segments: tuple[int, int] = (2, 6)  # span length in 5-second segments (inclusive range)
    scene_std: float = 0.3  # per-video offset of every frame, per latent dim
    noise_std: float = 1.0  # per-frame latent noise
    evidence_norm: float = 5.0  # norm of prototypes, distribution directions and motifs
    output_std: float = 0.5  # target per-dimension std of the projected features
    residual_noise: float = 0.05  # full-dimensional noise after projection

    @property
    def num_verticals(self) -> int:
        return int(np.clip(self.num_classes // 16, 2, len(VERTICALS)))

    @property
    def num_leaves(self) -> int:
        return self.num_classes - self.num_verticals

    def __post_init__(self) -> None:
        if not 12 <= self.num_classes <= 100_000:
            raise ValueError(f"the demo dataset needs 12 to 100,000 classes, got {self.num_classes}")
        if not 1 <= self.min_frames <= self.max_frames:
            raise ValueError(f"need 1 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}")

    def to_dict(self) -> dict:
        return asdict(self)


def _random_directions(rng: np.random.Generator, count: int, dim: int, norm: float) -> np.ndarray:
    vectors = rng.standard_normal((count, dim))
    vectors *= norm / np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


def _projection(rng: np.random.Generator, latent: int, size: int, scale: float) -> torch.Tensor:
    """A ``[latent, size]`` float32 matrix with orthonormal rows times ``scale``."""
    q, _ = torch.linalg.qr(torch.from_numpy(rng.standard_normal((size, latent))))
    return (q.T * scale).to(torch.float32).contiguous()


@dataclass
class DemoVideo:
    """One generated video before projection: latent frames, labels, evidence per leaf class."""

    num_frames: int
    rgb_latent: np.ndarray  # float32 [T, rgb_latent]
    audio_latent: np.ndarray  # float32 [T, audio_latent]
    labels: list[int]
    evidence: dict[int, np.ndarray] = field(default_factory=dict)  # leaf class -> bool [T]


class DemoWorld:
    """The fixed part of the model: classes, their mechanisms, prototypes and projections."""

    def __init__(self, config: DemoConfig, seed: int) -> None:
        self.config = c = config
        rng = np.random.default_rng([seed, 0x5EED])
        P, L = c.num_verticals, c.num_leaves
        self.verticals = list(VERTICALS)[:P]
        # Class ids: verticals 0..P-1, then leaves by decreasing frequency.
        rank = np.arange(L)
        self.leaf_vertical = rank % P
        self.leaf_mechanism = np.array([_MECHANISM_CYCLE[r % len(_MECHANISM_CYCLE)] for r in rank])
        self.names = self.verticals + [leaf_name(self.verticals[v], r // P) for r, v in zip(rank, self.leaf_vertical)]
        self.leaf_weight = (rank + 1.0) ** -c.frequency_exponent
        self.vertical_weight = np.bincount(self.leaf_vertical, weights=self.leaf_weight, minlength=P)
        self.children = [np.flatnonzero(self.leaf_vertical == v) for v in range(P)]

        self.rgb_prototype = _random_directions(rng, L, c.rgb_latent, c.evidence_norm)
        self.audio_prototype = _random_directions(rng, L, c.audio_latent, c.evidence_norm)
        self.direction = _random_directions(rng, L, c.rgb_latent, c.evidence_norm)
        conjunctions = np.flatnonzero(self.leaf_mechanism == MECHANISMS.index("conjunction"))
        pool = max(2, int(np.ceil(np.sqrt(2 * len(conjunctions)))))
        grid = rng.permutation(pool * pool)[: len(conjunctions)]
        self.motif_pairs = {int(leaf): (int(cell // pool), int(cell % pool)) for leaf, cell in zip(conjunctions, grid)}
        self.pair_to_leaf = {pair: leaf for leaf, pair in self.motif_pairs.items()}
        self.rgb_motif = _random_directions(rng, pool, c.rgb_latent, c.evidence_norm)
        self.audio_motif = _random_directions(rng, pool, c.audio_latent, c.evidence_norm)
        latent_std = np.sqrt(c.noise_std ** 2 + c.scene_std ** 2)
        self.rgb_projection = _projection(rng, c.rgb_latent, c.rgb_size,
                                          c.output_std * np.sqrt(c.rgb_size / c.rgb_latent) / latent_std)
        self.audio_projection = _projection(rng, c.audio_latent, c.audio_size,
                                            c.output_std * np.sqrt(c.audio_size / c.audio_latent) / latent_std)

    def leaf_class(self, leaf: int) -> int:
        return self.config.num_verticals + int(leaf)

    def mechanism(self, class_id: int) -> str:
        if class_id < self.config.num_verticals:
            return "vertical"
        return MECHANISMS[self.leaf_mechanism[class_id - self.config.num_verticals]]

    # Sampling ------------------------------------------------------------------------------
    def _draw_leaves(self, rng: np.random.Generator) -> list[int]:
        c = self.config
        count = 1 + min(int(rng.poisson(c.extra_leaves_mean)), c.max_leaves - 1)
        theme = rng.choice(len(self.verticals), p=self.vertical_weight / self.vertical_weight.sum())
        leaves: list[int] = []
        for _ in range(4 * count):
            pool = self.children[theme] if rng.random() < c.theme_probability else np.arange(c.num_leaves)
            weights = self.leaf_weight[pool]
            leaf = int(pool[rng.choice(len(pool), p=weights / weights.sum())])
            if leaf not in leaves:
                leaves.append(leaf)
            if len(leaves) == count:
                break
        return leaves

    def _spans(self, rng: np.random.Generator, num_frames: int) -> np.ndarray:
        """Boolean frame mask of 1..spans_max segment-aligned spans."""
        c = self.config
        segments = -(-num_frames // SEGMENT_FRAMES)
        mask = np.zeros(num_frames, dtype=bool)
        for _ in range(int(rng.integers(1, c.spans_max + 1))):
            length = min(int(rng.integers(c.span_segments[0], c.span_segments[1] + 1)), segments)
            start = int(rng.integers(0, segments - length + 1))
            mask[start * SEGMENT_FRAMES:(start + length) * SEGMENT_FRAMES] = True
        return mask

    def sample_video(self, rng: np.random.Generator) -> DemoVideo:
        c = self.config
        T = int(rng.integers(c.min_frames, c.max_frames + 1))
        rgb = rng.standard_normal((T, c.rgb_latent), dtype=np.float32) * np.float32(c.noise_std)
        rgb += rng.standard_normal(c.rgb_latent, dtype=np.float32) * np.float32(c.scene_std)
        audio = rng.standard_normal((T, c.audio_latent), dtype=np.float32) * np.float32(c.noise_std)
        audio += rng.standard_normal(c.audio_latent, dtype=np.float32) * np.float32(c.scene_std)
        evidence: dict[int, np.ndarray] = {}
        rgb_motifs: dict[int, np.ndarray] = {}  # motif -> frames where present
        audio_motifs: dict[int, np.ndarray] = {}

        def add_motif(table: dict, motif: int, mask: np.ndarray) -> None:
            table[motif] = table.get(motif, np.zeros(T, dtype=bool)) | mask

        for leaf in self._draw_leaves(rng):
            mask = self._spans(rng, T)
            mechanism = MECHANISMS[self.leaf_mechanism[leaf]]
            if mechanism == "visual":
                rgb[mask] += self.rgb_prototype[leaf]
            elif mechanism == "audio":
                audio[mask] += self.audio_prototype[leaf]
            elif mechanism == "distribution":
                frames = rng.permutation(np.flatnonzero(mask))
                half = len(frames) // 2  # equal numbers of +d and -d: the mean frame is unchanged
                rgb[frames[:half]] += self.direction[leaf]
                rgb[frames[half:2 * half]] -= self.direction[leaf]
            else:
                i, j = self.motif_pairs[leaf]
                add_motif(rgb_motifs, i, mask)
                add_motif(audio_motifs, j, mask)
                continue
            evidence[self.leaf_class(leaf)] = mask
        pool = len(self.rgb_motif)
        for _ in range(int(rng.poisson(c.decoys_mean))):
            motif, mask = int(rng.integers(pool)), self._spans(rng, T)
            add_motif(rgb_motifs if rng.random() < 0.5 else audio_motifs, motif, mask)
        for motif, mask in rgb_motifs.items():
            rgb[mask] += self.rgb_motif[motif]
        for motif, mask in audio_motifs.items():
            audio[mask] += self.audio_motif[motif]
        # A conjunction class is on whenever both of its motifs occur in the video.
        for i, rgb_mask in rgb_motifs.items():
            for j, audio_mask in audio_motifs.items():
                leaf = self.pair_to_leaf.get((i, j))
                if leaf is not None:
                    evidence[self.leaf_class(leaf)] = rgb_mask & audio_mask

        leaf_classes = sorted(evidence)
        verticals = {int(self.leaf_vertical[k - c.num_verticals]) for k in leaf_classes}
        return DemoVideo(T, rgb, audio, sorted(verticals) + leaf_classes, evidence)

    def project(self, latent: np.ndarray, modality: str, rng: np.random.Generator) -> np.ndarray:
        """Latent frames ``[T, d]`` -> quantized uint8 features ``[T, D]``."""
        projection = self.rgb_projection if modality == "rgb" else self.audio_projection
        features = (torch.from_numpy(latent) @ projection).numpy()
        # Uniform residual noise with the configured std: as good as Gaussian here and 4x cheaper.
        half_width = np.float32(self.config.residual_noise * np.sqrt(3.0))
        noise = rng.random(features.shape, dtype=np.float32)
        features += (noise - np.float32(0.5)) * (2 * half_width)
        # YouTube-8M quantization: round((clip(x, -2, 2) + 2) * 255/4).
        np.maximum(features, np.float32(-2.0), out=features)
        np.minimum(features, np.float32(2.0), out=features)
        features += np.float32(2.0)
        features *= np.float32(255.0 / 4.0)
        return np.rint(features, out=features).astype(np.uint8)
