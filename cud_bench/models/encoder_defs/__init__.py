"""One module per pretrained encoder; each registers itself with ``register_encoder``."""
