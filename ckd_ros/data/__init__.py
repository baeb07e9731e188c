"""Data: frame sources, readers for the RGBT benchmarks, and the synthetic RGB-T world."""
