"""Front ends over the job runner (Gradio UI, HTTP API). Calls only dreamer's public API."""
