"""SmolLM2-135M-Instruct on the native core: greedy tokens with prompt-cache hits equal a cold model's."""

from __future__ import annotations

import pytest

import edge_sdk
from edge_sdk.generate.sampling import SamplingParams

pytestmark = pytest.mark.real_model

SYSTEM = ("You are the help desk of the Riverside public library. Opening hours are 9 to 18 on weekdays and 10 to "
          "14 on Saturdays; the library is closed on Sundays. Members may borrow up to eight items for three weeks.")
MAX_TOKENS = 24


def test_hits_give_the_tokens_of_a_cold_model(real_gguf_path):
    from edge_sdk.backends.native import library

    ok, why = library.available()
    if not ok:
        pytest.skip(f"native core unavailable: {why}")
    with edge_sdk.load("smollm2-135m", backend="native", ctx=512, slots=2) as warm, \
            edge_sdk.load("smollm2-135m", backend="native", ctx=512, slots=0) as cold:
        def ids(messages):
            return warm.tokenize(warm.chat_prompt(messages), special=True)

        def both(messages):
            prompt = ids(messages)
            got = list(warm._gen.stream_tokens(prompt, SamplingParams(max_tokens=MAX_TOKENS)))
            cold._gen.reset()
            assert got == list(cold._gen.stream_tokens(prompt, SamplingParams(max_tokens=MAX_TOKENS)))
            st = warm._gen.stats
            return warm.detokenize(got), (len(prompt), st.cached_tokens, st.restored_tokens)

        sys_turn = {"role": "system", "content": SYSTEM}
        ask = lambda text: {"role": "user", "content": text}  # noqa: E731
        one = [sys_turn, ask("When do you open on Saturday?")]
        reply, stats = both(one)
        assert stats == (75, 0, 0)
        two = [sys_turn, ask("How many books can I borrow?")]
        assert both(two)[1] == (75, 62, 0)  # the system turn (62 tokens) is still in the live cache
        # the next turn of the first chat: its prompt and its 24 generated tokens come back from its slot (the
        # system turn stays in place)
        turn = one + [{"role": "assistant", "content": reply}, ask("And on Sunday?")]
        assert both(turn)[1] == (114, 75 + 24, 75 + 24 - 62)
        assert both(two)[1] == (75, 74, 12)  # the whole prompt but its last token, 12 rows from its slot
        assert both([sys_turn, ask("Can I renew a loan online?")])[1] == (75, 62, 0)  # the system turn
        # part of the second chat's prompt, from its slot: the system turn stays in place, the rest is copied
        assert both([sys_turn, ask("How many books can I borrow at once?")])[1] == (77, 68, 6)
