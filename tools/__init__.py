"""The tools the agent calls: editors, judges and critics. Each backend lives in its own module."""
