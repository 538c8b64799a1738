"""Models: frozen pretrained encoders, the sentence-feature cache, and the trainable heads."""
