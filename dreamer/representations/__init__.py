"""3D representations: parameters, rendering through renderers/, save/load, conversions."""
