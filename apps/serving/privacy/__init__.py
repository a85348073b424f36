"""Differential privacy for predict: the snapping Laplace mechanism and the per-caller daily
epsilon budget (serving is their only user)."""
