"""Translation: the recipe (data, subwords, model, BLEU, averaging) and the trained-model object, Translator."""

from qkv.tasks.translation.recipe import (
    TranslationData,
    build_translation_model,
    check_lengths,
    greedy_bleu,
    prepare_data,
    write_averaged_checkpoint,
)
from qkv.tasks.translation.translator import AttentionView, Translator

__all__ = [
    "AttentionView",
    "TranslationData",
    "Translator",
    "build_translation_model",
    "check_lengths",
    "greedy_bleu",
    "prepare_data",
    "write_averaged_checkpoint",
]
