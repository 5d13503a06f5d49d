"""Search: Ray Tune + Optuna over the cascade, search spaces, results and the registry entry."""
