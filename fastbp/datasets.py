"""Data sets: a deterministic synthetic MNIST-size set (and, later, the IDX readers)."""

from __future__ import annotations

import numpy as np


def make_mnist_like(
    n_samples: int = 70000,
    n_features: int = 784,
    n_classes: int = 10,
    random_state: int | None = 0,
    dtype: type = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic synthetic classification set shaped like MNIST, with learnable structure.

    Each class has a smooth random prototype (a blurred random image when ``n_features`` is a square, a
    smoothed random vector otherwise); a sample is its class prototype, randomly scaled and shifted, plus
    pixel noise and a blend with another class's prototype, clipped to [0, 1]. A 784-256-128-10 network
    reaches roughly 90-95% test accuracy: hard enough that training matters, easy enough to see it work.

    Parameters
    ----------
    n_samples : int
        Rows.
    n_features : int
        Columns ("pixels").
    n_classes : int
        Classes, labels 0 .. n_classes - 1, balanced to within one sample.
    random_state : int or None
        Seed; the same seed gives the same arrays on every machine.
    dtype : numpy float type
        Dtype of X.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), values in [0, 1]
    y : ndarray of shape (n_samples,), int64
    """
    if n_samples < 1 or n_features < 1 or n_classes < 2:
        raise ValueError("need n_samples >= 1, n_features >= 1 and n_classes >= 2")
    rng = np.random.default_rng(random_state)
    side = int(round(np.sqrt(n_features)))
    raw = rng.normal(size=(n_classes, n_features))
    if side * side == n_features and side >= 4:
        images = raw.reshape(n_classes, side, side)
        for axis in (1, 2):  # a few box blurs make strokes instead of salt-and-pepper
            for _ in range(3):
                images = (images + np.roll(images, 1, axis) + np.roll(images, -1, axis)) / 3
        raw = images.reshape(n_classes, n_features)
    else:
        for _ in range(3):
            raw = (raw + np.roll(raw, 1, 1) + np.roll(raw, -1, 1)) / 3
    prototypes = np.clip((raw - raw.mean(axis=1, keepdims=True)) / raw.std(axis=1, keepdims=True), 0, None)
    prototypes /= prototypes.max(axis=1, keepdims=True)
    y = rng.permutation(np.arange(n_samples) % n_classes).astype(np.int64)
    other = (y + rng.integers(1, n_classes, n_samples)) % n_classes
    blend = rng.uniform(0.0, 0.6, (n_samples, 1)).astype(dtype)
    scale = rng.uniform(0.6, 1.2, (n_samples, 1)).astype(dtype)
    X = np.empty((n_samples, n_features), dtype=dtype)
    prototypes = prototypes.astype(dtype)
    for start in range(0, n_samples, 8192):  # in chunks and in X's dtype: 70000 x 784 in about a second
        s = slice(start, start + 8192)
        chunk = (1 - blend[s]) * prototypes[y[s]] + blend[s] * prototypes[other[s]]
        chunk *= scale[s]
        chunk += rng.standard_normal(chunk.shape, dtype=np.float32) * 0.25
        np.clip(chunk, 0, 1, out=X[s])
    return X, y
