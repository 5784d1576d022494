"""Linear heads: multinomial logistic regression on a feature vector, fitted with numpy.

A head is stored as an `.npz` (weights, bias, feature mean and scale, class names) so neither
training nor inference needs torch; the pack manifest lists it with its sha256.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class LinearHead:
    classes: list[str]
    weight: np.ndarray  # (d, k)
    bias: np.ndarray  # (k,)
    mean: np.ndarray  # (d,)
    scale: np.ndarray  # (d,)

    def logits(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, np.float32) - self.mean) / self.scale
        return np.asarray(z @ self.weight + self.bias)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.logits(np.atleast_2d(x)))

    def save(self, path: Path) -> None:
        buf = io.BytesIO()
        np.savez(
            buf,
            classes=np.array(self.classes, dtype=str),
            weight=self.weight.astype(np.float32),
            bias=self.bias.astype(np.float32),
            mean=self.mean.astype(np.float32),
            scale=self.scale.astype(np.float32),
        )
        path.write_bytes(buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> LinearHead:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                classes=[str(c) for c in z["classes"]],
                weight=z["weight"],
                bias=z["bias"],
                mean=z["mean"],
                scale=z["scale"],
            )


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities with their logits divided by a temperature (above 1 softer, below 1
    sharper), along the last axis (one vector or one per row)."""
    p = np.asarray(probs, np.float64)
    if temperature == 1.0:
        return p
    z = np.log(np.clip(p, 1e-12, 1.0)) / temperature
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def fit_head(
    x: np.ndarray,
    y: list[str],
    *,
    l2: float = 1e-2,
    iterations: int = 300,
) -> LinearHead:
    """Fit by full-batch gradient descent with Nesterov momentum on standardised features.

    Balanced class weights, so a rare view is not drowned by a common one.
    """
    classes = sorted(set(y))
    if len(classes) < 2:
        raise ValueError(f"need at least two classes to fit a head, got {classes}")
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-3
    # float32 for the iterations: twice as fast, and the heads are stored as float32 anyway.
    z = ((x - mean) / scale).astype(np.float32)
    idx = np.array([classes.index(v) for v in y])
    n, d = z.shape
    k = len(classes)
    onehot = np.zeros((n, k), np.float32)
    onehot[np.arange(n), idx] = 1.0
    counts = onehot.sum(axis=0)
    sample_w = (n / (k * counts))[idx][:, None].astype(np.float32)
    # Step 1/L, L bounding the loss's curvature: stable for any l2 and feature count.
    v = np.ones(d) / np.sqrt(d)
    for _ in range(20):  # power iteration for the largest eigenvalue of z'z/n
        v = z.T @ (z @ v) / n
        v /= np.linalg.norm(v) + 1e-12
    top = float(v @ (z.T @ (z @ v)) / n)
    lr = 1.0 / (0.5 * float(sample_w.max()) * (top + 1.0) + l2)
    w = np.zeros((d, k), np.float32)
    b = np.zeros(k, np.float32)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    momentum = 0.9
    for _ in range(iterations):
        lw, lb = w + momentum * vw, b + momentum * vb
        p = softmax(z @ lw + lb)
        g = (p - onehot) * sample_w / n
        gw = z.T @ g + l2 * lw
        gb = g.sum(axis=0)
        vw = momentum * vw - lr * gw
        vb = momentum * vb - lr * gb
        w, b = w + vw, b + vb
    return LinearHead(
        classes=classes,
        weight=w.astype(np.float32),
        bias=b.astype(np.float32),
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
    )
