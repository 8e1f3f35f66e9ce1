"""Synthesis of minority-class samples: CycleGAN translation (seed 002)."""
