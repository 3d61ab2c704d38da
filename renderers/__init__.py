"""Differentiable renderers: Gaussians and meshes, each with a CUDA backend and a PyTorch one.

This package knows nothing of ``dreamer`` or ``app``: it takes plain tensors and returns plain
tensors. Importing it never builds or loads a CUDA extension.
"""
