"""svgan: multi-task recurrent conditional GAN and imbalance toolkit for BraTS and ACDC."""

__version__ = "0.1.0"
