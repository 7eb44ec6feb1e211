"""The Python API: `edge_sdk.load()` and the `Model` it returns.

Example::

    import edge_sdk
    with edge_sdk.load("smollm2-135m") as model:
        print(model.generate("The capital of France is", max_tokens=8))
        for piece in model.stream("Once upon a time", max_tokens=32, temperature=0.8, seed=1):
            print(piece, end="", flush=True)
        print(model.chat([{"role": "user", "content": "What is 2+2?"}], max_tokens=32))

A `Model` serves one request at a time: calls from other threads wait their
turn (or get `BusyError` after `busy_timeout` seconds); a generation can be
stopped with a `threading.Event` (`cancel=`), a `timeout=` in seconds, or
Ctrl-C, and the model stays usable with a consistent cache.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Callable, Iterator, Sequence

from .errors import BackendError, BusyError, EdgeSDKError, InvalidArgumentError
from .generate.generator import Generator
from .generate.sampling import SamplingParams
from .model.config import ModelConfig, QuantConfig
from .settings import (BACKENDS, MAX_THREADS, LoadArgs, RunSettings, board_settings, check_timeout, check_token_ids,
                       default_settings)
from .text.chat_template import DEFAULT_CHATML_TEMPLATE, ChatTemplate
from .text.tokenizer import Tokenizer

__all__ = ["BACKENDS", "MAX_THREADS", "Model", "load", "make_backend"]

SAMPLING_KEYS = ("max_tokens", "temperature", "top_k", "top_p", "min_p", "repetition_penalty", "repeat_last_n", "seed", "stop")
CONSTRAINT_KEYS = ("response_format", "regex", "choices", "grammar")


class Model:
    """A loaded model: tokenizer + backend + generator. Create it with `edge_sdk.load()`."""

    def __init__(self, backend: Any, tokenizer: Tokenizer, config: ModelConfig, quant: QuantConfig | None,
                 name: str, busy_timeout: float | None = None, details: dict[str, Any] | None = None,
                 generation_defaults: dict[str, Any] | None = None, prefill_chunk: int | None = None,
                 prompt_cache: Any = None) -> None:
        from .model.sampling_params import checked_generation_defaults

        self.backend = backend
        self.tokenizer = tokenizer
        self.config = config
        self.quant = quant
        self.name = name
        self.busy_timeout = check_timeout(busy_timeout, "busy_timeout")
        self.details = details or {}
        self.prompt_cache = prompt_cache  # generate.prompt_cache.PromptCache, or None (no slots)
        chunk = {} if prefill_chunk is None else {"prefill_chunk": prefill_chunk}
        self._gen = Generator(backend, tokenizer, prompt_cache=prompt_cache, **chunk)
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._open: Callable[[], Iterator[str] | None] | None = None  # the stream holding the model (a weakref)
        self._closed = False
        self._template: ChatTemplate | None = None
        self._constraints: Any = None  # generate.constraints.ConstraintEngine, made on the first constrained call
        self.last_stats: dict[str, Any] = {}
        # the model's own sampling defaults (GGUF general.sampling.*, generation_config.json); a call's own
        # arguments win, and fields neither gives take SamplingParams' defaults (greedy, no penalty)
        self.generation_defaults = checked_generation_defaults(generation_defaults or {}, f"model {name}")

    def __repr__(self) -> str:
        q = self.quant
        quant = "float32" if q is None else ("int8 per row" if q.group_size == 0 else f"int8 groups of {q.group_size}")
        isa = getattr(self.backend, "isa", None)
        backend = f"{self.backend.name} ({isa})" if isa else self.backend.name
        state = ", closed" if self._closed else ""
        kv = f" (KV {self.details['kv_dtype']})" if self.details.get("kv_dtype") else ""
        return (f"<edge_sdk.Model {self.name!r}: {self.config.n_params() / 1e6:.1f} M parameters, {quant}, "
                f"backend {backend}, ctx {self.backend.ctx}{kv}{state}>")

    # -- tokens ---------------------------------------------------------------------------------
    def tokenize(self, text: str, special: bool = False, add_bos: bool | None = None) -> list[int]:
        """Token ids of `text`; `special=True` parses special tokens such as `<|im_start|>`."""
        return self.tokenizer.encode(text, special=special, add_bos=add_bos)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))

    # -- serialization of requests ----------------------------------------------------------------
    def _acquire(self) -> None:
        if self._closed:
            raise EdgeSDKError("the model is closed")
        if self._owner == threading.get_ident():
            raise BusyError("this thread still has an unfinished stream from this model; finish or close it first")
        timeout = -1 if self.busy_timeout is None else self.busy_timeout
        if not self._lock.acquire(timeout=timeout):
            raise BusyError(f"the model is busy with another request (waited {self.busy_timeout} s)")
        self._owner = threading.get_ident()

    def _release(self) -> None:
        self._owner = None
        self._lock.release()

    # -- generation -------------------------------------------------------------------------------
    def _params(self, sampling: dict[str, Any]) -> SamplingParams:
        unknown = set(sampling) - set(SAMPLING_KEYS)
        if unknown:
            raise TypeError(f"unknown sampling parameters {sorted(unknown)}; known: {', '.join(SAMPLING_KEYS + CONSTRAINT_KEYS)}")
        given = {k: v for k, v in sampling.items() if v is not None}
        return SamplingParams(**{**self.generation_defaults, **given})

    def _constraint_state(self, constraint: Any) -> Any:
        """A fresh state of `constraint` (compiled once per model and grammar), or None."""
        if constraint is None:
            return None
        from .generate.constraints import ConstraintEngine, ConstraintState

        if self._constraints is None:
            self._constraints = ConstraintEngine(self.tokenizer, self.config.vocab_size)
        return ConstraintState(self._constraints.compile(constraint))

    def compile_constraint(self, *, response_format: Any = None, regex: Any = None, choices: Any = None,
                           grammar: Any = None) -> Any:
        """Check and compile a constraint now (it is cached: later requests with it start at once); returns the
        `generate.constraints.Constraint`. Errors are `InvalidArgumentError`s naming the field."""
        from .generate.constraints import constraint_from_args

        constraint = constraint_from_args(response_format, regex, choices, grammar)
        self._constraint_state(constraint)
        return constraint

    def stream_ids(self, prompt_ids: Sequence[int], *, cancel: threading.Event | None = None,
                   timeout: float | None = None, **sampling: Any) -> Iterator[str]:
        """Stream the completion of already tokenized input (text pieces)."""
        return self._stream(check_token_ids(prompt_ids), cancel, timeout, sampling)

    def _stream(self, ids: list[int], cancel: threading.Event | None, timeout: float | None,
                sampling: dict[str, Any], constraint: Any = None) -> Iterator[str]:
        """The one entry of every stream: sampling, timeout and the constraint are checked here, once (before any
        token is generated); inner layers trust them."""
        from .generate.constraints import constraint_from_args

        sampling = dict(sampling)
        args = {k: sampling.pop(k) for k in CONSTRAINT_KEYS if k in sampling}
        if args:
            if constraint is not None and any(v is not None for v in args.values()):
                raise InvalidArgumentError(f"{', '.join(k for k, v in args.items() if v is not None)} cannot be "
                                           "combined with tools: give one constraint")
            constraint = constraint if constraint is not None else constraint_from_args(**args)
        params = self._params(sampling)
        timeout = check_timeout(timeout, "timeout")
        state = self._constraint_state(constraint)
        me: list[Callable[[], Iterator[str] | None]] = []
        it = self._stream_ids(ids, params, cancel, timeout, me, state)
        me.append(weakref.ref(it))
        return it

    def _stream_ids(self, prompt_ids: Sequence[int], params: SamplingParams, cancel: threading.Event | None,
                    timeout: float | None, me: list[Callable[[], Iterator[str] | None]],
                    constraint: Any = None) -> Iterator[str]:
        self._acquire()
        self._open = me[0]
        try:
            check_files = getattr(self.backend, "check_files", None)
            if check_files is not None:  # the package on disk must still be the one loaded (one stat per file)
                check_files()
            yield from self._gen.stream_text(prompt_ids, params, cancel, timeout, constraint)
        finally:
            self.last_stats = self._gen.stats.to_dict()
            self._open = None
            self._release()

    def stream(self, prompt: str, *, cancel: threading.Event | None = None, timeout: float | None = None,
               **sampling: Any) -> Iterator[str]:
        """Stream the completion of `prompt` as text pieces (never splitting a UTF-8 character).

        Sampling parameters as `SamplingParams`; one constraint at most: `response_format` (OpenAI's
        {"type": "json_object"} or {"type": "json_schema", "json_schema": {"name", "schema"}}), `regex`,
        `choices` or `grammar` (Lark; see `generate.constraints`). `last_stats["finish_reason"]` says "stop"
        only when the output ended and any constraint is complete."""
        return self._stream(self.tokenizer.encode(prompt, special=False), cancel, timeout, sampling)

    def generate(self, prompt: str, *, cancel: threading.Event | None = None, timeout: float | None = None,
                 **sampling: Any) -> str:
        """The completion of `prompt` (without the prompt); takes what `stream` takes."""
        return "".join(self.stream(prompt, cancel=cancel, timeout=timeout, **sampling))

    def chat_prompt(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True,
                    tools: Sequence[dict[str, Any]] | None = None) -> str:
        """The model's chat template applied to `messages` (with `tools`: as `chat(..., tools=)` renders them)."""
        if self._template is None:  # compiled once per model
            self._template = ChatTemplate(self.tokenizer.chat_template or DEFAULT_CHATML_TEMPLATE)
        extra: dict[str, Any] = {}
        if tools:
            from .generate.tools import prompt_messages, template_renders_tools

            own = template_renders_tools(self._template.source)
            messages = prompt_messages(messages, tools, own)
            if own:
                extra["tools"] = list(tools)
        tok = self.tokenizer
        bos = tok.id_to_token(tok.bos_id) if tok.bos_id is not None else ""
        eos = tok.id_to_token(tok.eos_id) if tok.eos_id is not None else ""
        return self._template.render(messages, add_generation_prompt=add_generation_prompt, bos_token=bos or "",
                                     eos_token=eos or "", **extra)

    def chat_stream(self, messages: list[dict[str, Any]], *, cancel: threading.Event | None = None,
                    timeout: float | None = None, **sampling: Any) -> Iterator[str]:
        """Stream the assistant's reply; takes what `stream` takes."""
        return self._stream(self.tokenizer.encode(self.chat_prompt(messages), special=True), cancel, timeout, sampling)

    def chat(self, messages: list[dict[str, Any]], *, stream: bool = False, cancel: threading.Event | None = None,
             timeout: float | None = None, tools: Sequence[dict[str, Any]] | None = None, tool_choice: Any = None,
             **sampling: Any) -> Any:
        """The assistant's reply to a conversation (a list of {"role", "content"} dicts): its text, or with
        `stream=True` its text pieces.

        With `tools` (OpenAI function tools) the reply is OpenAI's assistant message, {"role": "assistant",
        "content": text or None, "tool_calls": [...]}, each call naming a tool with `arguments` (a JSON string)
        valid against its parameters; `tool_choice` is "auto" (default), "required", "none" or
        {"type": "function", "function": {"name": ...}} (see `generate.tools`)."""
        if tools is None:
            if tool_choice is not None:
                raise InvalidArgumentError("tool_choice needs tools")
            it = self.chat_stream(messages, cancel=cancel, timeout=timeout, **sampling)
            return it if stream else "".join(it)
        from .generate.tools import check_tool_choice, check_tools, parse_reply, tool_constraint

        if stream:
            raise InvalidArgumentError("a reply with tools is parsed whole: call chat(..., tools=...) without stream=True")
        tools = check_tools(tools)
        choice = check_tool_choice(tool_choice, tools)
        ids = self.tokenizer.encode(self.chat_prompt(messages, tools=tools), special=True)
        text = "".join(self._stream(ids, cancel, timeout, sampling, constraint=tool_constraint(tools, choice)))
        content, calls = parse_reply(text, tools) if self.last_stats.get("finish_reason") == "stop" else (text, [])
        if calls:
            self.last_stats["finish_reason"] = "tool_calls"
        return {"role": "assistant", "content": content, **({"tool_calls": calls} if calls else {})}

    # -- the prompt cache -------------------------------------------------------------------------
    def save_prompt_cache(self) -> int:
        """Write the prompt-cache slots changed since they were read or written to the `prompt_cache` directory
        (also done by `close()`); returns how many files were written (0 without a directory)."""
        self._acquire()
        try:
            return self.prompt_cache.save_files() if self.prompt_cache is not None else 0
        finally:
            self._release()

    # -- lifecycle --------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        cache = {"prompt_cache": self.prompt_cache.info()} if self.prompt_cache is not None else {}
        return {"name": self.name, "ctx": self.backend.ctx, "backend": self.backend.name,
                "vocab_size": self.config.vocab_size, "n_layers": self.config.n_layers,
                "quant": self.quant.to_dict() if self.quant else None, **self.details, **cache}

    def close(self) -> None:
        """Release the backend. An unfinished stream of this thread is closed first (it ends as "cancelled")."""
        if self._closed:
            return
        held = self._open() if self._open is not None and self._owner == threading.get_ident() else None
        if held is not None:  # this thread's stream, suspended: closing it releases the model
            held.close()  # type: ignore[attr-defined]
        self._acquire()
        try:
            self._closed = True
            if self.prompt_cache is not None:  # slots go to their files first (nothing without a directory)
                try:
                    self.prompt_cache.save_files()
                except OSError as e:
                    import warnings

                    warnings.warn(f"prompt cache: cannot write {self.prompt_cache.directory} "
                                  f"({e.strerror or e}); its slots are lost", RuntimeWarning, stacklevel=2)
            self.backend.close()
        finally:
            self._release()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # never hide the exception that is leaving the block
            self.close()
        except EdgeSDKError:
            pass


def auto_backend() -> str:
    """The native core when it is built for this CPU, else the numpy int8 path (said once, on stderr)."""
    from .settings import resolve_backend

    return resolve_backend("auto")


def make_backend(cfg: ModelConfig, qcfg: QuantConfig, qweights: Any, fweights: Any, run: RunSettings,
                 package: Any = None) -> Any:
    """The backend `run.backend` for a model, with every setting from `run` (checked, from the plan or the
    defaults). `run.stream_layers` > 0 (a board plan that streams the weights, with a package): the native core
    reads that many layers' weights at a time from the package file (`backends/native/stream.py`)."""
    files = package.files if package is not None else None
    name = run.backend
    if name == "float":
        if fweights is None:
            raise BackendError("the float backend needs the original model (a .gguf file or Hugging Face directory), not a converted package")
        from .backends.numpy_backend import FloatBackend

        return FloatBackend(cfg, fweights, run.ctx, run.kv_dtype)
    if name == "numpy":
        from .backends.numpy_backend import NumpyInt8Backend

        return NumpyInt8Backend(cfg, qweights, run.ctx, run.kv_dtype, package_files=files)
    if name == "native":
        from .backends.native.library import available

        ok, why = available()
        if not ok:
            raise BackendError(f"the native core is not available: {why}")
        if run.stream_layers and package is not None:
            from .backends.native.stream import StreamedNativeBackend

            return StreamedNativeBackend(package, run.ctx, run.kv_dtype, run.threads, layers_per_graph=run.stream_layers,
                                         prefill_chunk=run.prefill_chunk)
        from .backends.native.backend import NativeBackend

        return NativeBackend(cfg, qcfg, qweights, run.ctx, run.kv_dtype, run.threads, prefill_chunk=run.prefill_chunk,
                             package_files=files)
    if package is None:
        raise BackendError(f"the {name} backend runs a converted package's graphs; no package was given")
    if name == "onnx":
        from .backends.onnx_backend import OnnxBackend

        return OnnxBackend(package, run.ctx, threads=run.threads, providers=run.providers, kv_dtype=run.kv_dtype)
    from .backends.tflite_backend import TfliteBackend

    return TfliteBackend(package, run.ctx, threads=run.threads, kv_dtype=run.kv_dtype)


def is_package_path(path: Any) -> bool:
    from .export.package import is_package

    return is_package(path)


def load(model: str | os.PathLike | None = None, *, backend: str = "auto", board: str | None = None,
         threads: int | None = None, ctx: int | None = None, kv_dtype: str = "auto", group_size: int = 32,
         busy_timeout: float | None = None, quiet: bool = True,
         trusted_keys: Sequence[str | os.PathLike] | None = None, slots: int | None = None,
         prompt_cache: str | os.PathLike | None = None) -> Model:
    """Load a model for generation.

    `model`: a registered name (default `smollm2-135m`), a .gguf file, a Hugging Face
    directory or a converted package. `backend`: "auto" (the native core when built,
    else numpy), "native", "numpy" (int8 reference), "float", "onnx", "tflite".
    `ctx`: context length (default min(model's, 2048); on a board, the plan's: the
    largest that keeps every weight resident). `kv_dtype`: "auto" (f16 where the
    backend stores it, else f32; `plan.budget.DEFAULT_KV_DTYPE`), "f32" or "f16".
    `group_size`: 0 for per-row int8 scales, or the group size for per-group scales.
    `board`: a board profile id (`edge-sdk boards`): the memory plan for it is made
    from the model's metadata before any weight is loaded, and a model that does not
    fit raises `PlanError`; threads and, when `ctx` is not given, the context come
    from the plan, the same plan `edge-sdk plan --board` prints.
    `trusted_keys`: public key files (`edge-sdk keygen`; default: `$EDGE_SDK_TRUSTED_KEYS`); when there are
    any, only packages signed by one of them load (`SignatureError`), and registered names and model files,
    which are converted here unsigned, are refused.
    `slots`: prompt-cache slots, each keeping the KV rows of a recent prompt (and what was generated after it)
    for a later prompt that starts the same way (`generate/prompt_cache.py`); default: on a board, as many as
    its plan's memory left holds (at most `plan.budget.MAX_BOARD_SLOTS`; more than fit is a `PlanError`),
    else `plan.budget.DEFAULT_SLOTS`; 0 turns them off. `last_stats["cached_tokens"]` says how many prompt
    tokens were not computed. `prompt_cache`: a directory the slots are saved to (at `close()` and
    `save_prompt_cache()`) and read from here; files of another model, backend, KV dtype or format version,
    and damaged ones, are refused with a warning and ignored. A package converted with `--system-prompt`
    brings its system prompt's rows as one more slot.
    """
    from .generate.prompt_cache import check_directory, open_prompt_cache
    from .export.convert import cached_package, ready_package
    from .export.package import is_package, load_package
    from .export.signing import refuse_unsigned_source
    from .importers import registry as models

    args = LoadArgs.check(backend, threads, ctx, kv_dtype, group_size, board, slots)  # every argument, once
    busy_timeout = check_timeout(busy_timeout, "busy_timeout")
    cache_dir = check_directory(prompt_cache)
    chosen = args.backend
    name = str(model or models.DEFAULT_MODEL)
    refuse_unsigned_source(model, name, trusted_keys)  # before anything is downloaded or converted
    path = models.resolve(model, quiet=quiet)
    qcfg_wanted = QuantConfig(group_size=args.group_size)
    registered = name in models.REGISTRY and chosen != "float"
    if registered:  # its package when already converted: a board plan then needs no import
        path = ready_package(name, qcfg_wanted, tflite=chosen == "tflite") or path
    run = board_settings(path, args) if board is not None else None  # the board read once, before any weight
    if registered and not is_package(path):
        path = cached_package(name, qcfg_wanted, quiet=quiet, tflite=chosen == "tflite")
    fweights = pkg = None
    if chosen in ("onnx", "tflite") and not is_package(path):
        from .export.convert import package_for

        path = package_for(path, qcfg_wanted, quiet=quiet, tflite=chosen == "tflite")
    if is_package(path):
        in_memory = chosen in ("native", "numpy") and not (run and run.stream_layers)  # the others read them
        pkg = load_package(path, weights="memory" if in_memory else "file", trusted_keys=trusted_keys)
        cfg, qcfg, qweights, tok, generation = pkg.config, pkg.quant, pkg.weights, pkg.tokenizer, pkg.generation
    else:
        from .importers import import_model
        from .model.quantize import quantize_weights

        imported = import_model(path, quiet=quiet)
        cfg, tok, fweights, generation = imported.config, imported.tokenizer, imported.weights, imported.generation
        qcfg = qcfg_wanted
        qweights = None if chosen == "float" else quantize_weights(cfg, fweights, qcfg, quiet=quiet)
        if chosen != "float":
            fweights = None
    run = run or default_settings(cfg, args)
    if cache_dir is not None and run.slots < 1:  # before the backend is built
        raise InvalidArgumentError(f"prompt_cache={cache_dir} needs at least one slot; got slots={run.slots}")
    be = make_backend(cfg, qcfg, qweights, fweights, run, package=pkg)
    quant = None if chosen == "float" else qcfg
    try:
        from .generate.kv_file import identity_of

        cache = open_prompt_cache(be, run.slots, cache_dir, package=pkg, asked=slots is not None,
                                  identity=lambda: identity_of(cfg, quant, tok, pkg.manifest if pkg else None,
                                                               qweights if quant is not None else fweights))
    except BaseException:
        be.close()
        raise
    return Model(be, tok, cfg, quant, name, busy_timeout,
                 details={"kv_dtype": run.kv_dtype, **({"board": board} if board else {})},
                 generation_defaults=generation, prefill_chunk=run.prefill_chunk, prompt_cache=cache)
