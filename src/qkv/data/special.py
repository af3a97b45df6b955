"""The special token ids of the whole library (imports nothing): every vocabulary qkv builds starts with them.

``PAD`` pads batches (masked out of attention, ignored by the loss), ``BOS`` starts every decoder input,
``EOS`` ends every source and target, ``UNK`` stands for what the vocabulary lacks.
"""

PAD, BOS, EOS, UNK = 0, 1, 2, 3
