"""Export: a quantized model written as an edge package that a board loads without the original.

Takes the imported model, its `QWeights` and the graph records (`graphs`), and writes the package
(`package`: manifest with checksums, 64-byte aligned `weights.bin`, `tokenizer.json`), the runtime graph files
(`onnx`: the ONNX graphs, merged again at load; `tflite`: the `.tflite` graphs, written without TensorFlow),
and signatures (`signing`). `convert` runs the whole stage, once per model into the cache or to a directory;
`describe` reads any model's metadata (GGUF, Hugging Face, package) without its weights. The planner and the
backends take the package it hands on.
"""
