"""Text: token ids and back, chat templates, and text streamed a token at a time.

Takes a `tokenizers` pipeline (built by the importers from GGUF metadata or a Hugging Face directory, or
rebuilt from a package's `tokenizer.json`) and gives the `Tokenizer` (`tokenizer`), the sandboxed Jinja chat
template renderer (`chat_template`), and the incremental detokenizer and stop-string matcher (`streaming`)
that generation hands its tokens to.
"""
