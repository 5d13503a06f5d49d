"""Training: pure step functions, the single-process loop, and the Ray Train loop and trainer."""
