"""Synthetic world generator: the contract's files, for a scenario, with known true effects beside
them."""

from sicp.synth.world import World, generate_world, simulate_world

__all__ = ["World", "generate_world", "simulate_world"]
