"""The native backend: the C core in `native/` run through cffi.

`build` compiles the core (at `pip install`, lazily on first use, or cross-compiled for a board); `library`
loads it once per process and owns the cffi objects (the header `native/include/edge_sdk.h` is the cdef);
`arrays` checks every numpy array handed to C (dtype, shape, contiguity, alignment) and packs weight structs;
`core` (`NativeCore`) runs embeddings, layer ranges and the head on an arena laid out by the planner;
`backend` is the `Backend` the API uses, `stream` the one that reads the weights from the package one graph
at a time when the plan streams them, `threads` the default thread count.
"""
