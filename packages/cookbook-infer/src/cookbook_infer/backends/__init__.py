"""Model backends: the only place where models are loaded."""
