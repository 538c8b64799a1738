"""One module per registered shift; each calls :func:`shifts.base.register_shift` once."""
