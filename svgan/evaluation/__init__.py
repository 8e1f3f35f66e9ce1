"""Scoring and inference: challenge metrics on native grids, whole-patient prediction, diagnosis."""
