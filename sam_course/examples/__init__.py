"""Runnable examples: ``python -m sam_course.examples.<name> --help``."""
