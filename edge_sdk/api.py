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

from .errors import BackendError, BusyError, EdgeSDKError
from .generate.generator import Generator
from .generate.sampling import SamplingParams
from .model.config import ModelConfig, QuantConfig
from .settings import (BACKENDS, MAX_THREADS, LoadArgs, RunSettings, board_settings, check_timeout, check_token_ids,
                       default_settings)
from .text.chat_template import DEFAULT_CHATML_TEMPLATE, ChatTemplate
from .text.tokenizer import Tokenizer

__all__ = ["BACKENDS", "MAX_THREADS", "Model", "load", "make_backend"]

SAMPLING_KEYS = ("max_tokens", "temperature", "top_k", "top_p", "min_p", "repetition_penalty", "repeat_last_n", "seed", "stop")


class Model:
    """A loaded model: tokenizer + backend + generator. Create it with `edge_sdk.load()`."""

    def __init__(self, backend: Any, tokenizer: Tokenizer, config: ModelConfig, quant: QuantConfig | None,
                 name: str, busy_timeout: float | None = None, details: dict[str, Any] | None = None,
                 generation_defaults: dict[str, Any] | None = None, prefill_chunk: int | None = None) -> None:
        from .model.sampling_params import checked_generation_defaults

        self.backend = backend
        self.tokenizer = tokenizer
        self.config = config
        self.quant = quant
        self.name = name
        self.busy_timeout = check_timeout(busy_timeout, "busy_timeout")
        self.details = details or {}
        self._gen = Generator(backend, tokenizer) if prefill_chunk is None else Generator(backend, tokenizer, prefill_chunk)
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._open: Callable[[], Iterator[str] | None] | None = None  # the stream holding the model (a weakref)
        self._closed = False
        self._template: ChatTemplate | None = None
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
            raise TypeError(f"unknown sampling parameters {sorted(unknown)}; known: {', '.join(SAMPLING_KEYS)}")
        given = {k: v for k, v in sampling.items() if v is not None}
        return SamplingParams(**{**self.generation_defaults, **given})

    def stream_ids(self, prompt_ids: Sequence[int], *, cancel: threading.Event | None = None,
                   timeout: float | None = None, **sampling: Any) -> Iterator[str]:
        """Stream the completion of already tokenized input (text pieces)."""
        return self._stream(check_token_ids(prompt_ids), cancel, timeout, sampling)

    def _stream(self, ids: list[int], cancel: threading.Event | None, timeout: float | None,
                sampling: dict[str, Any]) -> Iterator[str]:
        """The one entry of every stream: sampling and timeout are checked here, once; inner layers trust them."""
        me: list[Callable[[], Iterator[str] | None]] = []
        it = self._stream_ids(ids, self._params(dict(sampling)), cancel, check_timeout(timeout, "timeout"), me)
        me.append(weakref.ref(it))
        return it

    def _stream_ids(self, prompt_ids: Sequence[int], params: SamplingParams, cancel: threading.Event | None,
                    timeout: float | None, me: list[Callable[[], Iterator[str] | None]]) -> Iterator[str]:
        self._acquire()
        self._open = me[0]
        try:
            check_files = getattr(self.backend, "check_files", None)
            if check_files is not None:  # the package on disk must still be the one loaded (one stat per file)
                check_files()
            yield from self._gen.stream_text(prompt_ids, params, cancel, timeout)
        finally:
            self.last_stats = self._gen.stats.to_dict()
            self._open = None
            self._release()

    def stream(self, prompt: str, *, cancel: threading.Event | None = None, timeout: float | None = None,
               **sampling: Any) -> Iterator[str]:
        """Stream the completion of `prompt` as text pieces (never splitting a UTF-8 character)."""
        return self._stream(self.tokenizer.encode(prompt, special=False), cancel, timeout, sampling)

    def generate(self, prompt: str, *, cancel: threading.Event | None = None, timeout: float | None = None,
                 **sampling: Any) -> str:
        """The completion of `prompt` (without the prompt)."""
        return "".join(self.stream(prompt, cancel=cancel, timeout=timeout, **sampling))

    def chat_prompt(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The model's chat template applied to `messages`."""
        if self._template is None:  # compiled once per model
            self._template = ChatTemplate(self.tokenizer.chat_template or DEFAULT_CHATML_TEMPLATE)
        tok = self.tokenizer
        bos = tok.id_to_token(tok.bos_id) if tok.bos_id is not None else ""
        eos = tok.id_to_token(tok.eos_id) if tok.eos_id is not None else ""
        return self._template.render(messages, add_generation_prompt=add_generation_prompt, bos_token=bos or "",
                                     eos_token=eos or "")

    def chat_stream(self, messages: list[dict[str, str]], *, cancel: threading.Event | None = None,
                    timeout: float | None = None, **sampling: Any) -> Iterator[str]:
        return self._stream(self.tokenizer.encode(self.chat_prompt(messages), special=True), cancel, timeout, sampling)

    def chat(self, messages: list[dict[str, str]], *, stream: bool = False, cancel: threading.Event | None = None,
             timeout: float | None = None, **sampling: Any) -> str | Iterator[str]:
        """The assistant's reply to a conversation (a list of {"role", "content"} dicts)."""
        it = self.chat_stream(messages, cancel=cancel, timeout=timeout, **sampling)
        return it if stream else "".join(it)

    # -- lifecycle --------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return {"name": self.name, "ctx": self.backend.ctx, "backend": self.backend.name,
                "vocab_size": self.config.vocab_size, "n_layers": self.config.n_layers,
                "quant": self.quant.to_dict() if self.quant else None, **self.details}

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
         trusted_keys: Sequence[str | os.PathLike] | None = None) -> Model:
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
    """
    from .export.convert import cached_package, ready_package
    from .export.package import is_package, load_package
    from .export.signing import refuse_unsigned_source
    from .importers import registry as models

    args = LoadArgs.check(backend, threads, ctx, kv_dtype, group_size, board)  # every argument, once
    busy_timeout = check_timeout(busy_timeout, "busy_timeout")
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
    be = make_backend(cfg, qcfg, qweights, fweights, run, package=pkg)
    return Model(be, tok, cfg, None if chosen == "float" else qcfg, name, busy_timeout,
                 details={"kv_dtype": run.kv_dtype, **({"board": board} if board else {})},
                 generation_defaults=generation, prefill_chunk=run.prefill_chunk)
