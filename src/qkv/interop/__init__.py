"""Interoperability: qkv models to and from other libraries (Hugging Face, CTranslate2, ONNX)."""
