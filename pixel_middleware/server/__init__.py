"""``pixel-middleware serve`` and the rest of the command line: the standalone collector and its operations."""
