"""Synthetic scenes: palette, rendering, instruction language, detection and the dataset generator."""
