"""Controllers for agentic mode: an LLM that picks every step (edit, judge, finish) itself."""
