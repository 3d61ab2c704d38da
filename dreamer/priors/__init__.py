"""Priors (the teachers): noise schedule, encode/decode, prompt embeddings, noise prediction."""
