"""The model itself, in plain records: what every stage reads and writes.

Takes nothing from the other stages. Holds the configuration records (`config`: `ModelConfig`,
`QuantConfig`), the float weights (`weights`), RoPE (`rope`), the float32 reference forward pass every backend
is checked against (`reference`), int8 quantization of the weights (`quantize`: `QWeights`), the exact int8
arithmetic of the native core in numpy (`int8_reference`, with the core's fixed float reduction order in
`canonical`), the bytes each part takes (`sizes`) and the accuracy of int8 against float (`accuracy`).
The importers hand `ModelConfig` + `FloatWeights` on to it; the graphs, packages, planner and backends take
its `QWeights`.
"""
