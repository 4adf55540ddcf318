"""Built-in editors: the simulated scene editor (sim) and the classic photo editor (classic)."""
