"""The comparison methods, one registered method per module (discovered by the method registry)."""
