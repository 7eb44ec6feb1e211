"""Stage 1 of the pipeline: read a model from disk into float32 weights and a tokenizer.

Example::

    m = import_model("SmolLM2-135M-Instruct.Q4_1.gguf")   # or a Hugging Face directory
    m.config.n_layers, m.tokenizer.encode("Hello")
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..model.config import ModelConfig
from ..errors import ModelFileError, TokenizerError
from ..model.weights import FloatWeights

if TYPE_CHECKING:
    from ..text.tokenizer import Tokenizer


@dataclass
class ImportedModel:
    config: ModelConfig
    weights: FloatWeights
    tokenizer: Tokenizer
    source: str
    generation: dict[str, Any] = field(default_factory=dict)  # the model's own sampling defaults (may be empty)


def is_hf_dir(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json"))


def with_source(source: str, build, *args):
    """`build(*args)`, with a TokenizerError's message prefixed by `source` when it does not name it already."""
    try:
        return build(*args)
    except TokenizerError as e:
        if str(e).startswith(source):
            raise
        raise TokenizerError(f"{source}: {e}") from e


def import_model(path: str | os.PathLike, quiet: bool = True) -> ImportedModel:
    """A .gguf file or a Hugging Face directory -> config, float weights, tokenizer (`quiet=False`: progress)."""
    from .gguf_vocab import tokenizer_from_gguf_metadata
    from .hf_vocab import tokenizer_from_hf_dir

    p = os.fspath(path)
    if not os.path.exists(p):
        raise ModelFileError(f"{p}: no such file or directory")
    if os.path.isdir(p):
        if not is_hf_dir(p):
            raise ModelFileError(
                f"{p}: a directory without config.json; expected a Hugging Face LLaMA directory "
                "(config.json, *.safetensors, tokenizer.json) or a converted edge package (manifest.json)"
            )
        from .hf_import import import_hf_dir

        cfg, weights = import_hf_dir(p, quiet=quiet)
        tok = with_source(p, tokenizer_from_hf_dir, p)
        generation = hf_generation_defaults(p)
    else:
        from .gguf_import import import_gguf

        from ..model.sampling_params import generation_defaults_from_gguf

        cfg, weights, meta = import_gguf(p, quiet=quiet)
        tok = with_source(p, tokenizer_from_gguf_metadata, meta)
        generation = generation_defaults_from_gguf(meta, p)
    if tok.vocab_size > cfg.vocab_size:
        raise ModelFileError(f"{p}: the tokenizer has {tok.vocab_size} tokens but the model only {cfg.vocab_size} embeddings")
    return ImportedModel(config=cfg, weights=weights, tokenizer=tok, source=p, generation=generation)


def hf_generation_defaults(path: str) -> dict[str, Any]:
    """The sampling defaults of a Hugging Face directory's `generation_config.json` ({} when it has none)."""
    from ..model.sampling_params import generation_defaults_from_hf
    from .hf_import import read_json

    gpath = os.path.join(path, "generation_config.json")
    if not os.path.isfile(gpath):
        return {}
    gen = read_json(gpath)
    if not isinstance(gen, dict):
        raise ModelFileError(f"{gpath}: expected a JSON object, got {type(gen).__name__}")
    return generation_defaults_from_hf(gen, path)
