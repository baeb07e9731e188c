"""Numeric precision and fast-path setting names, importable without torch (CLI help, launch
files, parameter tables).

fp32: the official outputs. fp16: CUDA. bf16: CUDA, or a CPU with fast bf16 (AMX). int8: x86 CPUs,
the branches' linear layers and the head's first convolutions as int8 GEMMs (``model/int8.py``).
"""

PRECISIONS = ("fp32", "fp16", "bf16", "int8")

# cuda_graphs (``model/cuda_graphs.py``): auto = on for a CUDA device.
CUDA_GRAPH_SETTINGS = ("auto", "on", "off")
