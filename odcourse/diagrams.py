"""Block diagrams drawn with matplotlib: labelled boxes joined by arrows.

Chapters redraw the slides' pipeline figures with this instead of copying images.
"""
from __future__ import annotations

from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch


@dataclass(frozen=True)
class Block:
    """A box centred at (x, y) in axes data units, with a label."""

    name: str
    x: float
    y: float
    label: str
    width: float = 2.0
    height: float = 0.9
    color: str = "#dbe9f6"


def draw_blocks(ax: Axes, blocks: list[Block], arrows: list[tuple[str, str, str]] = (),
                fontsize: int = 9) -> dict[str, Block]:
    """Draw `blocks` and `arrows` (from-name, to-name, label) on `ax`; return blocks by name.

    The axes limits are fitted to the blocks and the frame is hidden.
    """
    by_name = {block.name: block for block in blocks}
    for block in blocks:
        ax.add_patch(FancyBboxPatch((block.x - block.width / 2, block.y - block.height / 2),
                                    block.width, block.height, boxstyle="round,pad=0.05",
                                    facecolor=block.color, edgecolor="#34495e", linewidth=1.2))
        ax.text(block.x, block.y, block.label, ha="center", va="center", fontsize=fontsize, wrap=True)
    for start, end, label in arrows:
        a, b = by_name[start], by_name[end]
        dx, dy = b.x - a.x, b.y - a.y
        # Leave each box from the side that faces the other box.
        if abs(dx) * a.height >= abs(dy) * a.width:
            p = (a.x + (a.width / 2 + 0.05) * (1 if dx > 0 else -1), a.y)
            q = (b.x - (b.width / 2 + 0.05) * (1 if dx > 0 else -1), b.y)
        else:
            p = (a.x, a.y + (a.height / 2 + 0.05) * (1 if dy > 0 else -1))
            q = (b.x, b.y - (b.height / 2 + 0.05) * (1 if dy > 0 else -1))
        ax.add_patch(FancyArrowPatch(p, q, arrowstyle="-|>", mutation_scale=14, color="#34495e"))
        if label:
            ax.text((p[0] + q[0]) / 2, (p[1] + q[1]) / 2 + 0.12, label, ha="center", va="bottom",
                    fontsize=fontsize - 1, color="#555555")
    xs = [b.x for b in blocks]
    ys = [b.y for b in blocks]
    pad_x = max(b.width for b in blocks) / 2 + 0.3
    pad_y = max(b.height for b in blocks) / 2 + 0.3
    ax.set_xlim(min(xs) - pad_x, max(xs) + pad_x)
    ax.set_ylim(min(ys) - pad_y, max(ys) + pad_y)
    ax.set_aspect("equal")
    ax.axis("off")
    return by_name
