"""Built-in critics: the rule critic (rule) and the resampling baseline (repeat)."""
