"""Hostile inputs: every command attacked with the inputs that broke it (issue 8), so each class stays fixed."""
