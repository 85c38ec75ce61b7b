"""Core vocabulary shared by every layer: market data, fills, errors."""
