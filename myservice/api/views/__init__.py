"""The views, one module per resource; each parses, calls the model and renders."""
