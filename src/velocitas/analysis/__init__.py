"""Analysis: performance metrics (and, later, trend detection and ranking)."""
