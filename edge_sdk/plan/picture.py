"""Pictures of a device plan: the arena as time x address rectangles and the
budget as a stacked bar. SVG is written by hand (no plotting dependency);
PNG only when matplotlib happens to be importable.

Example::

    svg = plan_svg(device_plan)
    Path("plan.svg").write_text(svg)
"""

from __future__ import annotations

from typing import Sequence
from html import escape as _html_escape

from ..errors import PlanError
from .arena import ArenaPlan
from .budget import DevicePlan
from .records import Buffer


def escape(s: str) -> str:
    """&, < and > as XML entities (as `xml.sax.saxutils.escape`, which would import urllib and http.client)."""
    return _html_escape(s, quote=False)


PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
MiB = 1 << 20

WIDTH, HEIGHT = 980, 520
ARENA_BOX = (60, 60, 560, 400)  # x, y, width, height of the arena panel
BAR_BOX = (720, 60, 90, 400)  # x, y, width, height of the budget bar


def _text(x: float, y: float, s: str, size: int = 12, anchor: str = "start", weight: str = "normal") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" font-family="sans-serif">{escape(s)}</text>')


def _rect(x: float, y: float, w: float, h: float, fill: str, title: str = "") -> str:
    tip = f"<title>{escape(title)}</title>" if title else ""
    return (f'<rect x="{x:.2f}" y="{y:.2f}" width="{max(w, 0.5):.2f}" height="{max(h, 0.5):.2f}" '
            f'fill="{fill}" stroke="#333" stroke-width="0.5">{tip}</rect>')


def _arena_panel(buffers: Sequence[Buffer], arena: ArenaPlan, title: str, subtitle: str) -> list[str]:
    x0, y0, w, h = ARENA_BOX
    n_ops = max((b.last_use for b in buffers), default=0) + 1
    total = max(arena.arena_bytes, 1)
    col = w / n_ops
    out = [_text(x0, y0 - 30, title, 14, weight="bold"), _text(x0, y0 - 12, subtitle, 12),
           f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#999"/>']
    for i, b in enumerate(buffers):
        off = arena.offsets[b.name]
        bx, by = x0 + b.first_use * col, y0 + h - (off + b.size_bytes) / total * h
        bw, bh = (b.last_use - b.first_use + 1) * col, b.size_bytes / total * h
        tip = f"{b.name}: {b.size_bytes} bytes at offset {off}, ops {b.first_use}-{b.last_use}"
        out.append(_rect(bx, by, bw, bh, PALETTE[i % len(PALETTE)], tip))
        if bh >= 11 and bw >= 7 * len(b.name):
            out.append(_text(bx + bw / 2, by + bh / 2 + 4, b.name, 10, "middle"))
    for op in range(n_ops):
        out.append(_text(x0 + (op + 0.5) * col, y0 + h + 14, str(op), 9, "middle"))
    out.append(_text(x0 + w / 2, y0 + h + 32, "op index (time)", 11, "middle"))
    out.append(_text(x0 - 8, y0 + h, "0", 10, "end"))
    out.append(_text(x0 - 8, y0 + 10, f"{total / 1024:.0f} KiB", 10, "end"))
    return out


def _budget_panel(p: DevicePlan) -> list[str]:
    x0, y0, w, h = BAR_BOX
    top = max(p.peak_bytes, p.budget_bytes, 1)
    out = [_text(x0 - 40, y0 - 30, f"Device budget ({'fits' if p.fits else 'does NOT fit'})", 14, weight="bold")]
    y = y0 + h
    for i, (name, size) in enumerate(p.breakdown.items()):
        bh = size / top * h
        y -= bh
        out.append(_rect(x0, y, w, bh, PALETTE[i % len(PALETTE)], f"{name}: {size / MiB:.1f} MiB"))
        out.append(_text(x0 + w + 8, y + bh / 2 + 4, f"{name} {size / MiB:.1f} MiB", 11))
    by = y0 + h - p.budget_bytes / top * h
    out.append(f'<line x1="{x0 - 20}" y1="{by:.1f}" x2="{x0 + w + 20}" y2="{by:.1f}" stroke="#c00" stroke-width="2" stroke-dasharray="6,3"/>')
    out.append(_text(x0 - 24, by - 4, f"budget {p.budget_bytes / MiB:.0f} MiB", 11, "end"))
    return out


def plan_svg(p: DevicePlan) -> str:
    """The arena of the larger trace (prefill or decode) and the device budget, as an SVG document."""
    prefill_is_bigger = p.prefill_arena.arena_bytes >= p.decode_arena.arena_bytes
    buffers = p.prefill_buffers if prefill_is_bigger else p.decode_buffers
    arena = p.prefill_arena if prefill_is_bigger else p.decode_arena
    kind = f"prefill, {p.prefill_chunk} tokens" if prefill_is_bigger else "decode, 1 token"
    title = f"One layer's activation arena ({kind}, ctx {p.ctx})"
    subtitle = (f"greedy by size {p.arena.arena_bytes / 1024:.0f} KiB, naive {p.arena.naive_bytes / 1024:.0f} KiB, "
                f"lower bound {p.arena.lower_bound_bytes / 1024:.0f} KiB")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">',
             f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
             _text(10, HEIGHT - 10, f"{p.model_name or 'model'} on {p.board_id}: {p.backend}, {p.threads} threads, "
                   f"KV {p.kv_dtype}, weights {p.weights_mode}", 11)]
    parts += _arena_panel(buffers, arena, title, subtitle)
    parts += _budget_panel(p)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_png(p: DevicePlan, path: str) -> None:
    """Draw the same two panels with matplotlib, if it is installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle
    except ImportError as e:
        raise PlanError("--png needs matplotlib, which is not installed; use --svg FILE instead") from e
    bufs, arena = (p.prefill_buffers, p.prefill_arena) if p.prefill_arena.arena_bytes >= p.decode_arena.arena_bytes \
        else (p.decode_buffers, p.decode_arena)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 5), gridspec_kw={"width_ratios": [3, 1]})
    for i, b in enumerate(bufs):
        ax1.add_patch(Rectangle((b.first_use, arena.offsets[b.name] / 1024), b.last_use - b.first_use + 1,
                                b.size_bytes / 1024, facecolor=PALETTE[i % len(PALETTE)], edgecolor="black", lw=0.5))
    ax1.set_xlim(0, max(b.last_use for b in bufs) + 1)
    ax1.set_ylim(0, arena.arena_bytes / 1024)
    ax1.set_xlabel("op index")
    ax1.set_ylabel("offset (KiB)")
    ax1.set_title(f"arena {p.arena.arena_bytes / 1024:.0f} KiB (naive {p.arena.naive_bytes / 1024:.0f}, "
                  f"lower bound {p.arena.lower_bound_bytes / 1024:.0f})")
    bottom = 0.0
    for i, (name, size) in enumerate(p.breakdown.items()):
        ax2.bar(0, size / MiB, bottom=bottom, color=PALETTE[i % len(PALETTE)], label=f"{name} {size / MiB:.1f}")
        bottom += size / MiB
    ax2.axhline(p.budget_bytes / MiB, color="red", ls="--", label="budget")
    ax2.set_ylabel("MiB")
    ax2.set_xticks([])
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
