"""Human-readable rendering of an :class:`~seglab.advise.recommend.Advice` with rich (tables, panels)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from seglab.advise.recommend import Advice


def render(advice: Advice, console: Console) -> None:
    """Print the report to ``console``."""
    from seglab._extras import require

    require("rich", "the advice report")
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.table import Table

    a = advice
    enc = a.encoding + (" [yellow](ambiguous)[/]" if a.encoding_ambiguous else "")
    console.print(f"[bold]seglab advise[/] — {a.n_files} mask file(s)/array(s), {a.n_images} image(s), {a.n_pixels:,} pixels; encoding: {enc}")
    for n in a.encoding_notes:
        console.print(f"  note: {n}")
    t = Table(title="classes", title_justify="left")
    for col in ("#", "class", "pixels", "pixel freq", "in images", "weight (" + a.weights_method + ")"):
        t.add_column(col, justify="right" if col not in ("class",) else "left")
    if a.pos_weight is not None:
        t.add_column("pos_weight", justify="right")
    pw_offset = a.num_classes - len(a.pos_weight) if a.pos_weight is not None else 0
    for c in range(a.num_classes):
        row = [str(c), a.class_names[c], f"{a.class_pixel_counts[c]:,}", f"{a.class_frequencies[c]:.4%}",
               f"{a.class_image_counts[c]}/{a.n_images} ({a.class_image_fractions[c]:.0%})", f"{a.class_weights[c]:.4g}"]
        if a.pos_weight is not None:
            row.append(f"{a.pos_weight[c - pw_offset]:.4g}" if c >= pw_offset else "—")
        t.add_row(*row)
    console.print(t)
    f = Table.grid(padding=(0, 2))
    f.add_row("multi-label pixels", f"{a.multilabel_overlap_fraction:.4%} of labelled pixels")
    for p in a.overlap_pairs[:10]:
        f.add_row("", f"{p['names'][0]} + {p['names'][1]}: {p['pixels']:,} px ({p['fraction_of_labelled']:.3%})")
    f.add_row("every pixel labelled", "yes" if a.every_pixel_labelled else f"no — {a.unlabelled_fraction:.3%} of pixels have no class")
    f.add_row("imbalance ratio", "n/a" if a.imbalance_ratio is None else f"{a.imbalance_ratio:.4g} (largest / smallest class frequency)")
    f.add_row("empty masks", f"{a.empty_masks}/{a.n_images}" + (f" e.g. {', '.join(a.empty_mask_files[:3])}" if a.empty_mask_files else ""))
    f.add_row("rare classes", ", ".join(a.class_names[c] for c in a.rare_classes) or "none")
    if a.rgb:
        f.add_row("colours", ", ".join(c["name"] for c in a.rgb["colours"]))
        f.add_row("RGB reading", f"{a.rgb['reading']}" + (" (ambiguous: see reasons)" if a.rgb["ambiguous"] else ""))
    console.print(Panel(f, title="findings", title_align="left"))
    rec = Table.grid(padding=(0, 2))
    rec.add_row("mode", f"[bold]{a.mode}[/]")
    rec.add_row("final activation", f"[bold]{a.activation}[/] ({a.out_channels} output channel(s))")
    rec.add_row("loss", f"[bold]{a.loss}[/]")
    rec.add_row("Dice includes background", str(a.include_background))
    console.print(Panel(rec, title="recommendation", title_align="left"))
    console.print("[bold]why[/]")
    for r in a.reasons:
        console.print(f"  • {r}")
    for w in a.warnings:
        console.print(f"  [yellow]! {w}[/]")
    console.print(Syntax(a.code, "python", theme="ansi_dark", word_wrap=True))
    if a.skipped:
        console.print(f"[red]skipped {a.n_skipped} file(s):[/]")
        for s in a.skipped:
            console.print(f"  {s['error']}")


def render_text(advice: Advice, width: int = 110) -> str:
    """The report as plain text (no colours)."""
    import io

    from seglab._extras import require

    require("rich", "the advice report")
    from rich.console import Console

    buf = io.StringIO()
    render(advice, Console(file=buf, width=width, no_color=True, force_terminal=False))
    return buf.getvalue()
