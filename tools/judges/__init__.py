"""Built-in judges: the reference-free verifier (verify) and its checkers."""
