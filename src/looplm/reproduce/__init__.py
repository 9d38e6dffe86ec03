"""Reproductions of published results: ``looplm reproduce chapter12``."""
