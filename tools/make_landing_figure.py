"""Draw book/images/sharp-flat.png, the picture on the landing page and in the README.

A one-dimensional loss with a sharp, deeper minimum and a flat, shallower one, and SAM's
objective max_{|eps| <= rho} L(w + eps) computed on a grid: the worst case in a small
neighbourhood lifts the sharp minimum far more than the flat one, so SAM's minimizer is the
flat minimum. Everything is computed here; re-run after changing it:

    .venv/bin/python tools/make_landing_figure.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "book" / "images" / "sharp-flat.png"
RHO = 0.3


def loss(w: np.ndarray) -> np.ndarray:
    """Sharp minimum at w = -1 (value 0), flat minimum at w = 1.5 (value about 0.2)."""
    return 1.0 - np.exp(-(((w + 1.0) / 0.15) ** 2)) - 0.8 * np.exp(-(((w - 1.5) / 0.8) ** 2))


def sam_objective(w: np.ndarray, rho: float, step: float) -> np.ndarray:
    """max over |eps| <= rho of loss(w + eps), on a grid of spacing `step`."""
    offsets = np.arange(-rho, rho + step / 2, step)
    return np.max(loss(w[:, None] + offsets[None, :]), axis=1)


def main() -> None:
    step = 0.002
    w = np.arange(-3.0, 4.0 + step / 2, step)
    plain, sam = loss(w), sam_objective(w, RHO, step)
    w_plain, w_sam = w[np.argmin(plain)], w[np.argmin(sam)]

    fig, ax = plt.subplots(figsize=(7.2, 3.0), dpi=110)
    ax.plot(w, plain, color="#4C72B0", lw=2, label=r"training loss $L(w)$")
    ax.plot(w, sam, color="#DD8452", lw=2, ls="--",
            label=rf"SAM objective $\max_{{|\epsilon|\leq\rho}} L(w+\epsilon)$, $\rho={RHO}$")
    ax.plot([w_plain], [plain.min()], "o", color="#4C72B0", ms=7)
    ax.plot([w_sam], [sam.min()], "o", color="#DD8452", ms=7)
    ax.annotate("sharp minimum:\nlowest loss", (w_plain, plain.min()), xytext=(-2.9, 0.08),
                arrowprops=dict(arrowstyle="->", color="0.3"), fontsize=9)
    ax.annotate("flat minimum:\nSAM's choice", (w_sam, sam.min()), xytext=(2.5, 0.5),
                arrowprops=dict(arrowstyle="->", color="0.3"), fontsize=9)
    ax.set_xlabel("weight $w$")
    ax.set_ylabel("loss")
    ax.set_ylim(-0.05, 1.55)
    ax.legend(loc="upper left", fontsize=9, frameon=False, ncol=2)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, metadata={"Software": None})
    print(f"wrote {OUT} (plain minimum at w={w_plain:.2f}, SAM minimum at w={w_sam:.2f})")


if __name__ == "__main__":
    main()
