"""Maintainer tools: notebook hygiene, releasing assignments, leak scans, publishing.

Run as modules from the repository root, e.g. ``python -m coursetools.notebooks check``;
the Makefile targets call them.
"""
