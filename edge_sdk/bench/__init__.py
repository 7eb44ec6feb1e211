"""Benchmarks (a tool): speed, memory and accuracy of the SDK measured side by side with peers.

Nothing in the library imports this package; `edge-sdk bench` (`cli/bench.py`) and the scripts that run its
modules do. `backends` measures prefill and decode tokens/s and peak memory of every backend in its own
process, with rounds interleaved with llama.cpp's and the read bandwidth; `machine` holds the machine
measurements (bandwidth, memory available); `plan` compares the planner's predictions with measured runs;
`soak` runs thousands of generations and records memory.
"""
