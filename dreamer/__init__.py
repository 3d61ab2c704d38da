"""Dreamer: text-to-3D by score distillation. Prompt in, textured GLB out.

Importing the package is cheap and CPU-safe: heavy and CUDA libraries load on first use.
"""

__version__ = "0.1.0"
