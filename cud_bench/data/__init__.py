"""Data: sources (pinned wheels, the hub, local files), the task registry and splits."""
