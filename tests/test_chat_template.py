"""Chat templates: exact rendered prompts, sandboxing, message validation."""

from __future__ import annotations

import re

import pytest

from edge_sdk.text.chat_template import DEFAULT_CHATML_TEMPLATE, ChatTemplate, render_chat
from edge_sdk.errors import InvalidArgumentError, TokenizerError

# tokenizer.chat_template of SmolLM2-135M-Instruct (its GGUF and tokenizer_config.json).
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# TinyLlama-1.1B-Chat-v1.0 (zephyr style); relies on trim_blocks and eos_token.
TINYLLAMA_TEMPLATE = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n"
    "{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
)

SMOL_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


def test_smollm2_adds_its_default_system_prompt():
    text = render_chat(SMOLLM2_TEMPLATE, [{"role": "user", "content": "What is 2+2?"}])
    assert text == SMOL_SYSTEM + "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"


def test_smollm2_multi_turn_with_system_and_no_generation_prompt():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
    ]
    expected = (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\nBye<|im_end|>\n"
    )
    assert render_chat(SMOLLM2_TEMPLATE, messages, add_generation_prompt=False) == expected
    assert render_chat(SMOLLM2_TEMPLATE, messages) == expected + "<|im_start|>assistant\n"


def test_default_chatml():
    text = render_chat(DEFAULT_CHATML_TEMPLATE, [{"role": "user", "content": "Hi"}])
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_trim_blocks_and_eos_token_like_transformers():
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]
    text = render_chat(TINYLLAMA_TEMPLATE, messages, eos_token="</s>")
    assert text == "<|system|>\nS</s>\n<|user|>\nHi</s>\n<|assistant|>\n"


def test_extra_variables_helpers_and_compiled_reuse():
    tpl = ChatTemplate(
        "{{ bos_token }}{% for m in messages %}{{ m['content'] | tojson }}{% if loop.index == 1 %}{% break %}{% endif %}"
        "{% endfor %}|{{ tools | length }}|{{ strftime_now('%Y') | length }}"
    )
    messages = [{"role": "user", "content": "é\"x"}, {"role": "user", "content": "never"}]
    assert tpl.render(messages, bos_token="<s>", tools=[1, 2]) == '<s>"é\\"x"|2|4'
    assert tpl.render(messages[1:], tools=[]) == '"never"|0|4'
    # an unset variable is falsy, as templates written for transformers expect
    assert render_chat("{% if tools %}T{% endif %}ok", messages) == "ok"


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ messages.__class__.__base__.__subclasses__() }}",
        "{{ raise_exception.__globals__ }}",
        "{% for m in messages %}{{ m.update({'role': 'x'}) }}{% endfor %}",
        "{{ messages.append(1) }}",
    ],
)
def test_sandbox_refuses_python_internals_and_mutation(template):
    with pytest.raises(TokenizerError, match="unsafe operation, refused by the sandbox"):
        render_chat(template, [{"role": "user", "content": "Hi"}])


def test_template_errors_are_tokenizer_errors():
    with pytest.raises(InvalidArgumentError, match="rejected the conversation: Conversation roles must alternate"):
        render_chat("{{ raise_exception('Conversation roles must alternate') }}", [{"role": "user", "content": "a"}])
    with pytest.raises(TokenizerError, match="syntax error at line 1"):
        ChatTemplate("{% for m in messages %}")
    with pytest.raises(TokenizerError, match="failed to render: UndefinedError"):
        render_chat("{{ nothing.here }}", [{"role": "user", "content": "a"}])


@pytest.mark.parametrize(
    "messages,message",
    [
        ("Hi", "messages must be a list of dicts, got str"),
        ([], "messages is empty"),
        (["Hi"], "messages[0] must be a dict with 'role' and 'content', got str"),
        ([{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}],
         "messages[1] has role 'robot'; supported roles: system, user, assistant, tool"),
        ([{"role": "user"}], "messages[0] content must be a string, got NoneType"),
        ([{"role": "user", "content": ["a"]}], "messages[0] content must be a string, got list"),
    ],
)  # fmt: skip
def test_bad_messages(messages, message):
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        render_chat(DEFAULT_CHATML_TEMPLATE, messages)


def test_messages_are_not_modified():
    messages = [{"role": "user", "content": "Hi", "name": "ann"}]
    assert render_chat("{{ messages[0]['name'] }}", messages) == "ann"
    assert messages == [{"role": "user", "content": "Hi", "name": "ann"}]
