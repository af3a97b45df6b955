"""Interoperability: pretrained Hugging Face models opened as qkv's own models (:func:`load_pretrained`).

Needs the optional extra ``hf`` (``pip install 'qkv[hf]'``: transformers, sentencepiece); importing this package
does not, the loaders say which package is missing when one is.
"""

from qkv.interop.common import HFImportError, MissingExtraError
from qkv.interop.hf import Pretrained, is_hf_folder, load_pretrained

__all__ = ["HFImportError", "MissingExtraError", "Pretrained", "is_hf_folder", "load_pretrained"]
