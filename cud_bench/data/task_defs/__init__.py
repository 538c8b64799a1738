"""One module per task; each registers itself with ``@register_task``.

Modules whose name starts with an underscore hold readers shared by several
tasks and register nothing.
"""
