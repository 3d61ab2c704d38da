"""The built-in shapes prior: a small pixel-space text-to-image model of coloured primitives.

``world``: the canonical primitives and colours; ``dataset``: their renders and captions;
``text``: the word-level tokenizer and text encoder; ``model``: the UNet and the diffusers
folder; ``train``: the training script; ``sample``: 2D sampling; ``judge``: the independent
shape-and-colour classifier.
"""
