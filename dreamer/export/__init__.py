"""Writing results to disk: GLB, OBJ+MTL+PNG, previews; always whole files (write, then rename)."""
