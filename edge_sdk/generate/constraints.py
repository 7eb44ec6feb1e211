"""Constrained generation: output that always matches a JSON Schema, a regex, a list of choices or a grammar.

A constraint becomes a grammar for llguidance (https://github.com/guidance-ai/llguidance, the engine behind
llama.cpp's, ONNX Runtime GenAI's and LiteRT-LM's structured output), which computes, from the model's own
tokenizer, which tokens may come next. The generator applies that mask to the logits before sampling, in one
place for every backend (`ConstraintState.mask`): a token the mask forbids gets -inf, so no temperature,
top-k, top-p or penalty can choose it. Where the grammar admits exactly one continuation (`{"action":"` after
the opening brace), llguidance says so (`compute_ff_tokens`: the tokens the model's tokenizer would make) and
the generator feeds them as one prefill chunk instead of one decode step each.

Kinds, as `generate`/`stream`/`chat` take them:

* ``response_format={"type": "json_object"}``: any JSON object;
* ``response_format={"type": "json_schema", "json_schema": {"name": ..., "schema": {...}, "strict": True}}``
  (OpenAI's shape): JSON valid against the schema. Objects are written compactly (no spaces, keys in the
  schema's order): a small model left free fills its budget with whitespace;
* ``regex="[0-9]{3}-[0-9]{4}"``: text matching the whole regex;
* ``choices=["forward", "back"]``: exactly one of the strings;
* ``grammar=`` a Lark grammar (llguidance's dialect: https://github.com/guidance-ai/llguidance/blob/main/docs/syntax.md),
  for example ``start: "move " DIR " " NUM`` with ``DIR: "left" | "right"`` and ``NUM: /[0-9]{1,3}/``;
  ``%json {...}`` embeds a JSON Schema in a rule.

Bad constraints are refused before any token is generated, with an `InvalidArgumentError` naming the field
(a schema keyword the engine does not implement, a regex that matches nothing, an empty or repeated choice).
A generation that ends before the constraint is complete (max_tokens, the context, a timeout) says so:
its stats carry ``constraint: "incomplete"`` and ``finish_reason`` is not "stop".

Example::

    state = ConstraintState(engine.compile(constraint_from_args(choices=["yes", "no"])))
    state.mask(logits)            # in place: -inf for every token the constraint forbids
    state.consume(token_id)
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import BackendError, InvalidArgumentError

ENGINE_MISSING = ("constrained generation needs the llguidance engine, which has wheels for x86-64 and aarch64 "
                  "Linux with Python >= 3.10 (pip install 'llguidance>=1.9,<2'); this platform has none")

COMPACT_JSON = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}
"""JSON as compact as Python's `json.dumps(..., separators=(",", ":"))`: one spelling per value, so more tokens are
forced and a small model cannot loop on whitespace."""

CACHE_SIZE = 64
"""Compiled constraints kept per model (compiling takes about a millisecond; a matcher is copied from them)."""

KINDS = ("json_object", "json_schema", "regex", "choices", "grammar", "tool_call")


def _engine() -> Any:
    try:
        import llguidance
    except ImportError:
        raise BackendError(ENGINE_MISSING) from None
    if not hasattr(llguidance, "LLMatcher"):  # the empty placeholder wheel pip picks where no real one exists
        raise BackendError(ENGINE_MISSING)
    return llguidance


@dataclass(frozen=True)
class Constraint:
    """A checked constraint as an llguidance grammar (JSON text); `field` names the argument it came from."""

    kind: str
    grammar: str
    field: str
    schema: Mapping[str, Any] | None = None  # the JSON Schema, for json kinds: outputs are validated against it

    def describe(self) -> str:
        return f"{self.kind} ({self.field})"


def _check_schema(schema: Any, where: str) -> dict[str, Any]:
    import jsonschema

    if not isinstance(schema, Mapping):
        raise InvalidArgumentError(f"{where} must be a JSON Schema object, got {type(schema).__name__}")
    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
    except jsonschema.SchemaError as e:
        path = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in e.path)
        raise InvalidArgumentError(f"{where}{path}: not a valid JSON Schema: {e.message}") from None
    return dict(schema)


def json_schema_grammar(schema: Mapping[str, Any]) -> str:
    return _engine().LLMatcher.grammar_from_json_schema(dict(schema), defaults=COMPACT_JSON)


def constraint_from_response_format(response_format: Any) -> Constraint | None:
    """OpenAI's `response_format`: {"type": "text"} (None), {"type": "json_object"}, or {"type": "json_schema",
    "json_schema": {"name": ..., "schema": {...}, "strict": ...}}."""
    if not isinstance(response_format, Mapping):
        raise InvalidArgumentError(f"response_format must be an object such as {{'type': 'json_object'}}, got "
                                   f"{type(response_format).__name__}")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        schema = {"type": "object"}
        return Constraint("json_object", json_schema_grammar(schema), "response_format", schema)
    if kind != "json_schema":
        raise InvalidArgumentError(f"response_format.type must be 'text', 'json_object' or 'json_schema', got {kind!r}")
    spec = response_format.get("json_schema")
    if not isinstance(spec, Mapping):
        raise InvalidArgumentError("response_format.json_schema must be an object with 'name' and 'schema'")
    name = spec.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise InvalidArgumentError(f"response_format.json_schema.name must be 1-64 letters, digits, _ or -, got {name!r}")
    strict = spec.get("strict", True)
    if not isinstance(strict, bool):
        raise InvalidArgumentError(f"response_format.json_schema.strict must be true or false, got {strict!r}")
    schema = _check_schema(spec.get("schema"), "response_format.json_schema.schema")
    return Constraint("json_schema", json_schema_grammar(schema), "response_format.json_schema.schema", schema)


def constraint_from_args(response_format: Any = None, regex: Any = None, choices: Any = None,
                         grammar: Any = None) -> Constraint | None:
    """The one constraint the caller gave (None for none); two at once is an error naming both."""
    given = [name for name, v in (("response_format", response_format), ("regex", regex), ("choices", choices),
                                  ("grammar", grammar)) if v is not None]
    if len(given) > 1:
        raise InvalidArgumentError(f"{' and '.join(given)} cannot be combined: give one constraint")
    if response_format is not None:
        return constraint_from_response_format(response_format)
    llg = _engine() if given else None
    if regex is not None:
        if not isinstance(regex, str) or not regex:
            raise InvalidArgumentError(f"regex must be a non-empty string, got {regex!r}")
        return Constraint("regex", llg.LLMatcher.grammar_from_regex(regex), "regex")
    if choices is not None:
        if isinstance(choices, (str, bytes)) or not isinstance(choices, Sequence):
            raise InvalidArgumentError(f"choices must be a list of strings, got {type(choices).__name__}")
        if not choices:
            raise InvalidArgumentError("choices is empty: give at least one string")
        bad = [c for c in choices if not isinstance(c, str) or not c]
        if bad:
            raise InvalidArgumentError(f"choices must be non-empty strings, got {bad[0]!r}")
        seen: set[str] = set()
        dupes = [c for c in choices if c in seen or seen.add(c)]  # type: ignore[func-returns-value]
        if dupes:
            raise InvalidArgumentError(f"choices lists {dupes[0]!r} twice")
        lark = "start: " + " | ".join(json.dumps(c) for c in choices)
        return Constraint("choices", llg.LLMatcher.grammar_from_lark(lark), "choices")
    if grammar is not None:
        if not isinstance(grammar, str) or not grammar.strip():
            raise InvalidArgumentError(f"grammar must be the text of a Lark grammar, got {grammar!r}")
        return Constraint("grammar", llg.LLMatcher.grammar_from_lark(grammar), "grammar")
    return None


class CompiledConstraint:
    """A constraint compiled for one tokenizer: a template matcher that each generation copies."""

    def __init__(self, constraint: Constraint, template: Any, eos_id: int, vocab_size: int) -> None:
        self.constraint = constraint
        self._template = template
        self.eos_id = eos_id
        self.vocab_size = vocab_size

    def matcher(self) -> Any:
        return self._template.deep_copy()


class ConstraintEngine:
    """One model's view of the engine: its tokenizer, built once (on first use), and the compiled constraints.

    llguidance reads the model's own `tokenizer.json` (its Rust tokenizer is built in) and the id that ends a
    generation; the mask covers `vocab_size` ids (the embedding rows), so ids the tokenizer lacks are never
    allowed. Building it takes about 0.5 s and 40 MiB for SmolLM2's 49,152 tokens.
    """

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        if tokenizer.eos_id is None:
            raise InvalidArgumentError("constrained generation needs a tokenizer with an end-of-text token")
        self._tokenizer = tokenizer
        self.vocab_size = vocab_size
        self._lltok: Any = None
        self._cache: OrderedDict[str, CompiledConstraint] = OrderedDict()
        self._lock = threading.Lock()

    def _lltokenizer(self) -> Any:
        if self._lltok is None:
            llg = _engine()
            self._lltok = llg.LLTokenizer(self._tokenizer.to_json(), n_vocab=self.vocab_size,
                                          eos_token=self._tokenizer.eos_id)
        return self._lltok

    def compile(self, constraint: Constraint) -> CompiledConstraint:
        """Compile (or take from the cache) a constraint; an InvalidArgumentError names the field when the engine
        refuses it (an unimplemented schema keyword, an unsatisfiable schema, a bad regex, a grammar error) or
        when it admits no text at all."""
        with self._lock:
            hit = self._cache.get(constraint.grammar)
            if hit is not None:
                self._cache.move_to_end(constraint.grammar)
                return hit
            llg = _engine()
            tok = self._lltokenizer()
            error = llg.LLMatcher.validate_grammar(constraint.grammar, tok)
            if error:
                raise InvalidArgumentError(f"{constraint.field}: the constraint cannot be compiled: {error}")
            template = llg.LLMatcher(tok, constraint.grammar, log_level=0)
            if template.is_error():
                raise InvalidArgumentError(f"{constraint.field}: the constraint cannot be compiled: {template.get_error()}")
            compiled = CompiledConstraint(constraint, template, self._tokenizer.eos_id, self.vocab_size)
            state = ConstraintState(compiled)
            allowed = state.allowed_ids()
            if not template.is_accepting() and (allowed.size == 0 or list(allowed) == [compiled.eos_id]):
                raise InvalidArgumentError(f"{constraint.field}: the constraint admits no text (nothing can match it)")
            self._cache[constraint.grammar] = compiled
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
            return compiled


class ConstraintState:
    """One generation's progress through a compiled constraint."""

    def __init__(self, compiled: CompiledConstraint) -> None:
        self.compiled = compiled
        self._m = compiled.matcher()
        words = (compiled.vocab_size + 31) // 32
        self._words = np.zeros(words, dtype=np.int32)  # llguidance's bitmask: token i is bit i % 32 of word i // 32
        self._ptr = (self._words.ctypes.data, self._words.nbytes)

    def _compute(self) -> np.ndarray:
        """The allowed tokens as a boolean vector (vocab,)."""
        self._m.unsafe_compute_mask_ptr(*self._ptr)
        return np.unpackbits(self._words.view(np.uint8), bitorder="little")[: self.compiled.vocab_size].view(bool)

    def allowed_ids(self) -> np.ndarray:
        return np.flatnonzero(self._compute())

    def mask(self, logits: np.ndarray) -> np.ndarray:
        """`logits` (vocab,) with -inf for every token the constraint forbids now (a float32 copy)."""
        out = np.array(logits, dtype=np.float32, copy=True)
        allowed = self._compute()
        if out.shape != allowed.shape:
            raise BackendError(f"the constraint covers {allowed.size} tokens but the model gives {out.size} logits")
        out[~allowed] = -np.inf
        return out

    def forced(self) -> list[int]:
        """The tokens the constraint admits as the only continuation (may be empty)."""
        return list(self._m.compute_ff_tokens())

    def consume(self, tokens: Sequence[int]) -> None:
        for t in tokens:
            if not self._m.consume_token(int(t)):
                raise BackendError(f"the constraint refused token {t}: {self._m.get_error() or 'not allowed here'}")

    @property
    def complete(self) -> bool:
        """The output so far satisfies the constraint (it may still be extended, e.g. a longer number)."""
        return bool(self._m.is_accepting())

    @property
    def finished(self) -> bool:
        """Nothing can follow but the end: the output is complete and final."""
        return bool(self._m.is_stopped())
