"""Pipeline stages (init, coarse, extract, texture, export) and the resumable runner."""
