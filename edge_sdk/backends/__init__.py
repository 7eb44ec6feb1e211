"""Backends: runtimes that run an int8 model and keep its KV cache.

Each takes the model (`QWeights`, or a converted package for the runtimes that read graph files) and a
context length, and implements `base.Backend.forward(tokens, pos, last_only)` -> logits, with every call's
input checked the same way at this boundary (`base.check_forward_tokens`). `native` is the C core;
`onnx_backend` runs the package's ONNX graphs on ONNX Runtime; `tflite_backend` its `.tflite` graphs on
LiteRT; `numpy_backend` the int8 reference and the float oracle. Exporters live in `export`, not here.
"""
