"""Turn generated token ids into text pieces as they arrive, and cut at stop strings.

`TextStreamer` is an incremental detokenizer. A token is not always a whole
character (byte-level BPE splits an emoji over several tokens; SentencePiece
falls back to ``<0xNN>`` byte tokens), and SentencePiece decoders drop the
leading space of the first token. So each new token is decoded together with
a short window of the tokens before it, and only the text past that window's
own decoding is emitted; while the window ends in U+FFFD (an unfinished UTF-8
sequence) nothing is emitted. This is the prefix/read offset scheme of vLLM's
``detokenize_incrementally`` and Hugging Face's ``TextStreamer``. The window
starts with the last tokens of the prompt (`context`), so the first generated
word keeps its space after a SentencePiece prompt ("Hello" + "▁the" streams
" the"). The pieces always concatenate to
``decode(context + ids)[len(decode(context)):]``, which is ``decode(ids)`` when
there is no context.

`StopMatcher` scans the emitted text for stop strings across piece
boundaries: it holds back any tail that could still grow into a stop string
and cuts the text where the first stop string begins.

Example::

    streamer, stops = TextStreamer(tok), StopMatcher(["\\n\\n"])
    for token_id in generated:
        text, hit = stops.feed(streamer.push(token_id))
        print(text, end="")
        if hit:
            break
    else:
        print(stops.feed(streamer.flush()).text + stops.flush())
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from ..errors import SamplingError

_REPLACEMENT = "\ufffd"
CONTEXT_TOKENS = 5  # prompt tokens that open the window (vLLM's INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET)


class TextStreamer:
    """Incremental detokenizer: `push` ids one by one, get the new text.

    skip_special: drop control tokens (``<|im_end|>``) from the text, as
        ``Tokenizer.decode`` does by default.
    context: the ids before the first pushed one (the prompt); its last
        CONTEXT_TOKENS open the window and are never emitted.

    Example::

        s = TextStreamer(tok)                       # SmolLM2's tokenizer
        [s.push(i) for i in tok.encode("👍🏽 done")]
        # ['', '', '👍', '', '', '🏽', ' done']     (each emoji is three byte tokens)
    """

    def __init__(self, tokenizer, skip_special: bool = True, context: Sequence[int] = ()) -> None:
        self._tok = tokenizer
        self._skip_special = skip_special
        self._ids: list[int] = [int(t) for t in list(context)[-CONTEXT_TOKENS:]]
        self._prefix = 0  # start of the context window (already emitted tokens)
        self._read = len(self._ids)  # end of what has been emitted (or was the prompt)

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes ("" while a character is unfinished)."""
        self._ids.append(int(token_id))
        before, after = self._window_texts()
        if len(after) > len(before) and not after.endswith(_REPLACEMENT):
            self._prefix, self._read = self._read, len(self._ids)
            return after[len(before) :]
        return ""

    def flush(self) -> str:
        """Emit whatever is held back (an unfinished character shows as U+FFFD)."""
        before, after = self._window_texts()
        self._prefix = self._read = len(self._ids)
        return after[len(before) :] if len(after) > len(before) else ""

    def _window_texts(self) -> tuple[str, str]:
        ids, skip = self._ids, self._skip_special
        before = self._tok.decode(ids[self._prefix : self._read], skip_special=skip)
        after = self._tok.decode(ids[self._prefix :], skip_special=skip)
        return before, after


class StopResult(NamedTuple):
    """What `StopMatcher.feed` lets through: safe text, and whether a stop string was hit."""

    text: str
    stopped: bool


class StopMatcher:
    """Find stop strings in streamed text that may straddle piece boundaries.

    Example::

        m = StopMatcher(["User:"])
        m.feed("Sure.\\nUs")    # StopResult(text='Sure.\\n', stopped=False)  ("Us" held)
        m.feed("er: more")      # StopResult(text='', stopped=True)
    """

    def __init__(self, stop: Sequence[str]) -> None:
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        for s in stop:
            if not isinstance(s, str) or not s:
                raise SamplingError(f"stop strings must be non-empty strings, got {s!r}")
        self._stops = stop
        self._held = ""
        self._stopped = False

    @property
    def stopped(self) -> bool:
        return self._stopped

    def feed(self, text: str) -> StopResult:
        """Add a piece of text; return the part that can be shown now.

        Once a stop string is hit, the text before it is returned with
        ``stopped=True`` and every later call returns ``("", True)``.
        """
        if self._stopped:
            return StopResult("", True)
        if not self._stops:
            return StopResult(text, False)
        buf = self._held + text
        hits = [i for i in (buf.find(s) for s in self._stops) if i >= 0]
        if hits:
            self._stopped, self._held = True, ""
            return StopResult(buf[: min(hits)], True)
        keep = self._partial_tail(buf)
        self._held = buf[len(buf) - keep :] if keep else ""
        return StopResult(buf[: len(buf) - keep], False)

    def flush(self) -> str:
        """The held-back tail, when generation ends without a stop string."""
        held, self._held = self._held, ""
        return "" if self._stopped else held

    def _partial_tail(self, buf: str) -> int:
        """Length of the longest tail of `buf` that is a proper prefix of a stop string."""
        best = 0
        for s in self._stops:
            for k in range(min(len(s) - 1, len(buf)), best, -1):
                if buf.endswith(s[:k]):
                    best = k
                    break
        return best
