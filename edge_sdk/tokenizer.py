"""Moved: `edge_sdk.text.tokenizer` (the `Tokenizer`) and `edge_sdk.importers.gguf_vocab` /
`edge_sdk.importers.hf_vocab` (building one from GGUF metadata or a Hugging Face directory).

This module keeps old scripts working for one release: `from edge_sdk.tokenizer import Tokenizer` still
imports the class, and its former constructors `Tokenizer.from_gguf`, `from_gguf_metadata` and `from_hf_dir`
are the functions `tokenizer_from_gguf`, `tokenizer_from_gguf_metadata` and `tokenizer_from_hf_dir` here.
"""

from __future__ import annotations

from .importers.gguf_vocab import PRE_TOKENIZERS, tokenizer_from_gguf, tokenizer_from_gguf_metadata
from .importers.hf_vocab import tokenizer_from_hf_dir
from .text.tokenizer import END_OF_GENERATION_TOKENS, Tokenizer

__all__ = ["END_OF_GENERATION_TOKENS", "PRE_TOKENIZERS", "Tokenizer", "tokenizer_from_gguf",
           "tokenizer_from_gguf_metadata", "tokenizer_from_hf_dir"]
