"""Names of the model's run-time settings (numeric precision, fast paths, token elimination, device),
importable without torch: the CLI's choices, the launch arguments and the node's parameter table read
them here, and the torch code that acts on them validates against the same tuples.

fp32: the official outputs. fp16: CUDA. bf16: CUDA, or a CPU with fast bf16 (AMX). int8: x86 CPUs,
the branches' linear layers and the head's first convolutions as int8 GEMMs (``model/int8.py``).
"""

PRECISIONS = ("fp32", "fp16", "bf16", "int8")

# cuda_graphs (``model/cuda_graphs.py``): auto = on for a CUDA device.
CUDA_GRAPH_SETTINGS = ("auto", "on", "off")

# stack_branches (``model/stacked.py``): auto = ``runtime.auto_stack_branches`` decides.
STACK_SETTINGS = ("auto", "on", "off")

# Token elimination (``model/elimination.py``, docs/model.md): mce = one keep decision from the
# element-wise max of both branches' attention, ce = each branch its own, none = keep every token.
CE_MODES = ("mce", "ce", "none")

# Where inference runs: auto = CUDA when present. ``cuda:N`` is also taken where a device string is free text.
DEVICES = ("auto", "cpu", "cuda")
