"""CUD and its two ablations, one registered method per module."""
