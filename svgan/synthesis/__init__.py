"""Synthesis of minority-class samples: CycleGAN translation (Zunair and Ben Hamza)."""
