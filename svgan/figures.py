"""Figures written to files: matplotlib without a screen, each PNG written whole or not at all."""

from __future__ import annotations

from .data.io import atomic_path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only; no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str, dpi: int = 80, tight: bool = True) -> None:
    """Lay out ``fig`` (``tight``: matplotlib's tight layout), write it atomically to ``path`` as PNG
    and close it."""
    if tight:
        fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)
