"""Sample-based distances between feature sets: KID (unbiased MMD^2) and k-NN precision / recall (numpy).

- **KID** (Binkowski et al. 2018): the unbiased estimate of MMD^2 with the cubic polynomial kernel
  ``k(a, b) = (a . b / d + 1)^3`` (d the feature dimension). Unbiased: over two samples of one
  distribution its expectation is 0, so single estimates can be negative. :func:`kid_blocks` splits
  the samples into disjoint blocks and compares block b with reference block b: the blocks are
  independent, so their mean is the KID and ``std / sqrt(blocks)`` its standard error, and
  resampling the blocks resamples the samples (the leaderboard's intervals do).
- **Precision / recall** (Kynkaanniemi et al. 2019): the real (fake) manifold is the union of balls
  around each real (fake) feature with radius its distance to its k-th nearest neighbour in its own
  set; precision = share of fakes inside the real manifold (fidelity), recall = share of reals
  inside the fake manifold (diversity).
"""

from __future__ import annotations

import numpy as np

MIN_BLOCK = 16  # fewest samples in a KID block


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(x @ y.T / d + 1) ** 3`` in float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def self_term(x: np.ndarray) -> float:
    """Mean of the kernel over distinct pairs of ``x`` (the unbiased within-set term); needs 2 rows."""
    n = len(x)
    if n < 2:
        raise ValueError(f"an unbiased MMD needs at least 2 points per set, got {n}")
    k = polynomial_kernel(x, x)
    return float((k.sum() - np.trace(k)) / (n * (n - 1)))


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, y_self: float | None = None) -> float:
    """Unbiased MMD^2 between the rows of ``x`` and ``y`` (polynomial kernel); ``y_self``: a cached
    :func:`self_term` of ``y`` (the reference's is computed once)."""
    yy = self_term(y) if y_self is None else y_self
    return self_term(x) + yy - 2.0 * float(polynomial_kernel(x, y).mean())


def block_count(n: int, most: int) -> int:
    """How many disjoint KID blocks ``n`` samples make: at most ``most``, each of at least :data:`MIN_BLOCK`."""
    return max(1, min(most, n // MIN_BLOCK))


def kid_blocks(x: np.ndarray, reference_blocks: list[np.ndarray], reference_self: list[float]) -> np.ndarray:
    """Per-block unbiased MMD^2: the samples ``x``, in a fixed pseudo-random order (seed 0: blocks must not
    inherit an order of the samples, such as one class first), cut into ``len(reference_blocks)`` disjoint
    blocks of equal size (the remainder left out), block b against reference block b (its :func:`self_term`)."""
    blocks = len(reference_blocks)
    size = len(x) // blocks
    if size < 2:
        raise ValueError(f"{len(x)} samples cannot fill {blocks} KID blocks of at least 2")
    x = x[np.random.default_rng(0).permutation(len(x))]
    return np.array([mmd2_unbiased(x[b * size:(b + 1) * size], reference_blocks[b], reference_self[b])
                     for b in range(blocks)])


def _pairwise(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    sq = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return np.sqrt(np.clip(sq, 0.0, None))


def _radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row to its k-th nearest other row."""
    d = _pairwise(x, x)
    np.fill_diagonal(d, np.inf)
    return np.partition(d, k - 1, axis=1)[:, k - 1]


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of ``fake`` against ``real`` with k-NN manifolds (both sets need more than k rows)."""
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} points per set, got {len(real)} and {len(fake)}")
    cross = _pairwise(fake, real)                       # (fake, real)
    precision = (cross <= _radii(real, k)[None, :]).any(1).mean()
    recall = (cross.T <= _radii(fake, k)[None, :]).any(1).mean()
    return float(precision), float(recall)
