"""Rendering helpers for the Gradio app (pure functions: data in, escaped HTML out)."""
