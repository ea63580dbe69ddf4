"""Helpers for the course "Deep Learning for Object Detection".

Imported the same way in chapters, assignments and the project's tests. Never holds a
solution or a hidden test (tests/test_leaks.py proves it).
"""
from .runtime import glue, in_colab, setup, static_figures

__version__ = "0.1.0"
__all__ = ["__version__", "glue", "in_colab", "setup", "static_figures"]
