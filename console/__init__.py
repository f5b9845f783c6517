"""Operator surface: the `lamplighter` CLI and the web process."""
