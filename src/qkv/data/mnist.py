"""Digit images: MNIST's t10k split (idx files, parsed with numpy) and scikit-learn's bundled 8×8 digits.

idx format (LeCun): a big-endian header — 2 zero bytes, a type byte (0x08 = unsigned byte), a byte giving the
number of dimensions n — then n big-endian uint32 sizes, then the data. Images are ``idx3`` (N, 28, 28),
labels ``idx1`` (N,). The files may be gzipped. The t10k split is used as the README of the data folder fixes:
the first 8,000 images to train, the last 2,000 to test.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

IMAGES = "t10k-images-idx3-ubyte"
LABELS = "t10k-labels-idx1-ubyte"
N_TRAIN = 8000


class IdxError(ValueError):
    """An idx file is corrupt: bad magic number, or a size that does not match its header."""


def read_idx(path: str | Path) -> np.ndarray:
    """Parse an idx file (optionally ``.gz``) of unsigned bytes into a numpy array of the header's shape.

    Raises:
        FileNotFoundError: no such file.
        IdxError: bad magic number (not ``00 00 08 nd``) or data size different from the header's.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"idx file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise IdxError(f"{path}: corrupt gzip stream ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 4:
        got = raw[:4].hex(" ") if raw else "an empty file"
        raise IdxError(f"{path}: bad magic number: expected 00 00 08 0n (unsigned bytes, n dims), got {got}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxError(f"{path}: truncated header: expected {header} bytes, got {len(raw)}")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise IdxError(
            f"{path}: wrong size: header says shape {shape} = {expected} bytes of data, file has {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


@dataclass
class ImageSplits:
    """Train/test images ``(N, 1, S, S)`` float in [0, 1] and labels ``(N,)`` int64."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    name: str

    @property
    def image_size(self) -> int:
        return self.train_x.shape[-1]


def _find(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"MNIST file not found: expected {folder / stem}.gz (or without .gz)")


def load_mnist_t10k(folder: str | Path, n_train: int = N_TRAIN) -> ImageSplits:
    """MNIST t10k from ``folder``: the first ``n_train`` (8,000) images train, the rest (2,000) test."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"MNIST folder not found: {folder}")
    images_path, labels_path = _find(folder, IMAGES), _find(folder, LABELS)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise IdxError(f"expected images (N, H, W) and labels (N,), got {images.shape} and {labels.shape}")
    if len(images) != len(labels):
        raise IdxError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if labels.max() > 9:
        raise IdxError(f"{labels_path}: labels must be 0-9, found {labels.max()}")
    x = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]  # (N, 1, 28, 28)
    y = torch.from_numpy(labels.astype(np.int64))
    return ImageSplits(x[:n_train], y[:n_train], x[n_train:], y[n_train:], "mnist-t10k")


def load_digits_8x8(test_fraction: float = 0.2, seed: int = 0) -> ImageSplits:
    """scikit-learn's bundled 8×8 digits (1,797 images, no download); needs the optional ``scikit-learn``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError(
            "the built-in 8x8 digits need scikit-learn (pip install scikit-learn), or pass --data with MNIST"
        ) from None
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8), pixels 0..16
    y = torch.tensor(digits.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(x) * test_fraction)
    test, train = perm[:n_test], perm[n_test:]
    return ImageSplits(x[train], y[train], x[test], y[test], "sklearn-digits-8x8")


def random_shift(images: Tensor, max_shift: int = 2, generator: torch.Generator | None = None) -> Tensor:
    """Data augmentation: translate each image by up to ``max_shift`` pixels (zero fill). ``(B, C, S, S)``."""
    if max_shift <= 0:
        return images
    b = images.shape[0]
    padded = torch.nn.functional.pad(images, (max_shift,) * 4)  # (B, C, S + 2m, S + 2m)
    size = images.shape[-1]
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    rows = dy[:, None] + torch.arange(size)[None]  # (B, S)
    cols = dx[:, None] + torch.arange(size)[None]  # (B, S)
    idx = torch.arange(b)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]]  # (B, S, S, C)
    return out.permute(0, 3, 1, 2).contiguous()  # (B, C, S, S)
