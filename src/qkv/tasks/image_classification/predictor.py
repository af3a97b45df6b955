"""A trained ViT with its image preprocessing: images in, labels and probabilities (and maps) out.

The object :func:`qkv.load` returns for a ``qkv vit train`` checkpoint or a Hugging Face ViT folder.
Legend: N images, C channels, S image side, L layers, H heads, P patches (N' = 1 + P positions).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from qkv.tasks.image_classification.vit import predict_logits
from qkv.tasks.kinds import expect_kind
from qkv.tasks.predictions import EncoderAttentionView, Prediction, labels_for, predictions
from qkv.train.checkpoint import load_checkpoint

#: one image: a file path, a PIL image, or a tensor ``(S, S)`` / ``(C, S, S)`` already as the model reads it
Image = str | Path | Tensor | Any


class ImageClassifier:
    """Classify images with a :class:`~qkv.models.vit.ViT`.

    Files and PIL images are preprocessed as the model was trained: converted to grey (1 channel) or RGB
    (3 channels), resized to ``size`` × ``size``, then ``(x · rescale − mean) / std`` per channel. Tensors are
    taken as they are (already preprocessed). One image gives one :class:`~qkv.tasks.predictions.Prediction`;
    a list (or a batch tensor ``(N, C, S, S)``) gives a list.

    Args:
        model: the ViT.
        labels: class names by id (default ``"0"``, ``"1"``, …).
        preprocessing: ``size``, ``mean``, ``std`` (per channel, or ``None``), ``rescale`` (default: the
            model's ``image_size``, no normalisation, pixels / 255 — as ``qkv vit train`` reads digits).
        device: where the model runs.

    Example:
        >>> vit = ImageClassifier.load("runs/vit")          # doctest: +SKIP
        >>> vit.predict("digit.png").label                  # doctest: +SKIP
        '7'
    """

    kind = "image-classifier"

    def __init__(
        self, model: nn.Module, labels: Sequence[str] | None = None, preprocessing: dict[str, Any] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:  # fmt: skip
        config = model.config
        self.labels = labels_for(labels, config.n_classes, type(model).__name__)
        self.preprocessing = {"size": config.image_size, "mean": None, "std": None, "rescale": 1 / 255,
                              **(preprocessing or {})}  # fmt: skip
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    @classmethod
    def load(cls, checkpoint: str | Path, device: str | torch.device = "cpu") -> ImageClassifier:
        """Load a folder written by ``qkv vit train``."""
        expect_kind(checkpoint, "image-classifier")
        loaded = load_checkpoint(checkpoint, device=device)
        return cls(loaded.model, loaded.config.get("labels"), None, device)

    def read(self, image: Image) -> Tensor:
        """One image as the model reads it, ``(C, S, S)`` float."""
        c, s = self.model.config.in_channels, self.model.config.image_size
        if isinstance(image, Tensor):
            x = image.float()
            x = x[None] if x.dim() == 2 else x
        else:
            x = self._from_pixels(image)
        if tuple(x.shape) != (c, s, s):
            raise ValueError(f"image of shape {tuple(x.shape)}: this model reads ({c}, {s}, {s})")
        return x

    def _from_pixels(self, image: Any) -> Tensor:
        x = self.pixels(image)  # (C, S, S)
        p = self.preprocessing
        if p.get("mean") is not None and p.get("std") is not None:
            mean, std = torch.tensor(p["mean"]).view(-1, 1, 1), torch.tensor(p["std"]).view(-1, 1, 1)
            x = (x - mean) / std
        return x

    def pixels(self, image: Any) -> Tensor:
        """An image file or PIL image as grey / RGB pixels ``(C, S, S)`` · ``rescale`` (to show; no mean/std)."""
        import numpy as np
        from PIL import Image as PILImage

        if isinstance(image, Tensor):
            return image.float()[None] if image.dim() == 2 else image.float()
        if isinstance(image, str | Path):
            path = Path(image)
            if not path.is_file():
                raise FileNotFoundError(f"image not found: {path}")
            try:
                image = PILImage.open(path)
                image.load()
            except OSError as err:
                raise ValueError(f"{path}: not an image PIL can read ({err})") from None
        p, channels = self.preprocessing, self.model.config.in_channels
        image = image.convert("L" if channels == 1 else "RGB").resize((p["size"], p["size"]), PILImage.BILINEAR)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()) * float(p["rescale"])  # (S, S[, 3])
        return x[None] if x.dim() == 2 else x.permute(2, 0, 1)  # (C, S, S)

    def batch(self, images: Image | Sequence[Image]) -> tuple[Tensor, bool]:
        """``(images (N, C, S, S), whether one image was given)``."""
        if isinstance(images, Tensor) and images.dim() == 4:
            return torch.stack([self.read(x) for x in images]), False
        if isinstance(images, list | tuple):
            if not images:
                raise ValueError("no images given")
            return torch.stack([self.read(x) for x in images]), False
        return self.read(images)[None], True

    def probabilities(self, images: Image | Sequence[Image]) -> Tensor:
        """Class probabilities ``(N, C)``, in input order."""
        return predict_logits(self.model, self.batch(images)[0]).softmax(-1)

    def predict(self, images: Image | Sequence[Image]) -> Prediction | list[Prediction]:
        """The label and probabilities of one image, or of each image of a list / batch."""
        x, one = self.batch(images)
        found = predictions(predict_logits(self.model, x).softmax(-1), self.labels)
        return found[0] if one else found

    @torch.no_grad()  # not inference_mode: the inputs it returns may be read again under autograd
    def attention(self, image: Image) -> EncoderAttentionView:
        """Every self-attention map ``L × (1, H, N', N')`` over ``cls``, ``p0``, ``p1``, … (patches row by row)."""
        x = self.read(image)[None].to(self.device)  # (1, C, S, S)
        logits, maps = self.model(x, return_attention=True)  # (1, K), L × (1, H, N', N')
        tokens = ["cls", *(f"p{i}" for i in range(self.model.config.n_patches))]
        prediction = predictions(logits.softmax(-1), self.labels)[0]
        return EncoderAttentionView(tokens, [m.float().cpu() for m in maps], x.cpu(), prediction)
