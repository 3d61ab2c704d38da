"""Scoring a mesh against a ground-truth mesh (Chamfer, F-score, normal consistency, colour)."""
