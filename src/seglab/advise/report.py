"""Rendering of an :class:`~seglab.advise.advice.Advice`: rich tables and panels on a terminal
(:func:`render`), plain unwrapped text when piped or redirected (:func:`render_plain`).

Both put what the advice assumes (a void label, a label remap, an RGB reading) right after the first line,
and print the code lines whole: a terminal may wrap them on screen, but no newline is ever inserted into them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from seglab.advise.advice import Advice

MAX_ROWS = 40  # with more classes than this, classes without any pixel are left out of the table (and counted)


def _header(a: Advice) -> str:
    """The first line: how many masks, samples and elements, and the encoding."""
    enc = a.encoding + (" (ambiguous)" if a.encoding_ambiguous else "")
    return (f"seglab advise — {a.n_files} mask file(s)/array(s), {a.n_images} {a.sample}(s), {a.n_pixels:,} {a.element}s; "
            f"encoding: {enc}")


def _rows(a: Advice) -> tuple[list[list[str]], list[str], int]:
    """Table rows, column names, and how many zero-pixel classes were left out."""
    cols = ["#"] + (["label"] if a.label_values is not None and a.label_values != list(range(a.num_classes)) else []) + [
        "class", f"{a.element}s", f"{a.element} freq", f"in {a.sample}s", f"weight ({a.weights_method})"]
    if a.pos_weight is not None:
        cols.append("pos_weight")
    pw_offset = a.num_classes - len(a.pos_weight) if a.pos_weight is not None else 0
    keep = [c for c in range(a.num_classes) if a.num_classes <= MAX_ROWS or a.class_pixel_counts[c] > 0]
    rows = []
    for c in keep:
        row = [str(c)] + ([str(a.label_values[c])] if "label" in cols and a.label_values is not None else []) + [
            a.class_names[c], f"{a.class_pixel_counts[c]:,}", f"{a.class_frequencies[c]:.4%}",
            f"{a.class_image_counts[c]}/{a.n_images} ({a.class_image_fractions[c]:.0%})", f"{a.class_weights[c]:.4g}"]
        if a.pos_weight is not None:
            row.append(f"{a.pos_weight[c - pw_offset]:.4g}" if c >= pw_offset else "—")
        rows.append(row)
    return rows, cols, a.num_classes - len(rows)


def _findings(a: Advice) -> list[tuple[str, str]]:
    """The findings panel: ``(label, value)`` rows about overlap, labelling, void, imbalance, emptiness, spacing and colours."""
    px, img = a.element, a.sample
    f = [("multi-label " + px + "s", f"{a.multilabel_overlap_fraction:.4%} of labelled {px}s")]
    f.extend(("", f"{p['names'][0]} + {p['names'][1]}: {p['pixels']:,} {px}s ({p['fraction_of_labelled']:.3%})")
             for p in a.overlap_pairs[:10])
    f.append((f"every {px} labelled", "yes" if a.every_pixel_labelled else f"no — {a.unlabelled_fraction:.3%} of {px}s have no class"))
    if a.void_label is not None:
        f.append(("void (ignored)", f"label {a.void_label}: {a.n_ignored_pixels:,} {px}s"))
    f.append(("imbalance ratio", "n/a" if a.imbalance_ratio is None else f"{a.imbalance_ratio:.4g} (largest / smallest class {px} frequency)"))
    f.append((f"empty {img}s", f"{a.empty_masks}/{a.n_images}" + (f" e.g. {', '.join(a.empty_mask_files[:3])}" if a.empty_mask_files else "")))
    f.append((f"classes in < 5% of {img}s", ", ".join(a.class_names[c] for c in a.rare_classes) or "none"))
    if a.spacing:
        s = a.spacing
        med = " x ".join(f"{x:.4g}" for x in s["median"])
        rng = "" if s["distinct"] == 1 else (" (per axis min " + " x ".join(f"{x:.4g}" for x in s["min"])
                                              + ", max " + " x ".join(f"{x:.4g}" for x in s["max"]) + ")")
        f.append((f"{px} spacing", f"{med} (median over {s['files']} file(s), header units){rng}"))
        f.append(("anisotropy", f"{s['anisotropy']:.3g} (largest / smallest spacing of a {img}, worst {img})"))
    if a.rgb:
        f.append(("colours", ", ".join(c["name"] for c in a.rgb["colours"])))
        f.append(("RGB reading", f"{a.rgb['reading']}" + (" (ambiguous: see reasons)" if a.rgb["ambiguous"] else "")))
    return f


def _structure_rows(a: Advice) -> tuple[list[list[str]], list[str]]:
    """Rows of the structure table (classes measured with the structure extra)."""
    px = a.element
    cols = ["class", "components", f"per {a.sample}", "small", f"median size ({px}s)", "skeleton/fg", f"width ({px}s)",
            f"thickness ({px}s)", "length/width", "tubular"]
    rows = [[m["name"], f"{m['components']:,}", f"{m['components_per_image']:.3g}", f"{m['small_components']:,}",
             f"{m['median_component_size']:.3g}", f"{m['skeleton_fraction']:.3g}", f"{m['width']:.3g}", f"{m['thickness']:.3g}",
             f"{m['elongation']:.3g}", "yes" if m["tubular"] else "no"] for m in a.structure]
    return rows, cols


def _metric_lines(a: Advice) -> list[str]:
    """One line per metric to report, with its classes and reason."""
    return [f"{m['metric']} ({', '.join(m['classes'])}): {m['reason']}" for m in a.metrics]


def _evidence_lines(a: Advice) -> list[str]:
    """One line per rule applied: its evidence status and where the table is (docs/advise_evidence.md)."""
    return [f"{e['title']}: {e['status']}" + (f" ({e['detail']})" if e["detail"] else "") + f" — {e['pointer']}"
            for e in a.evidence]


def _recommendation(a: Advice) -> list[tuple[str, str]]:
    """The recommendation panel: ``(label, value)`` rows (mode, activation, loss, background, spec)."""
    return [("mode", a.mode), ("final activation", f"{a.activation} ({a.out_channels} output channel(s))"), ("loss", a.loss),
            ("Dice includes background", str(a.include_background)), ("--loss spec", a.loss_spec)]


def render(advice: Advice, console: Console) -> None:
    """Print the report to a rich ``console`` (a terminal)."""
    from seglab._extras import require

    require("rich", "the advice report")
    from rich.markup import escape

    a = advice
    console.print(escape(_header(a)), highlight=False)
    for s in a.assumptions:
        console.print(f"[bold yellow]assumption:[/] {escape(s)}")
    for n in a.encoding_notes:
        console.print(f"  note: {escape(n)}")
    _rich_tables(a, console)
    _rich_sections(a, console)


def _rich_table(title: str, cols: list[str], rows: list[list[str]]) -> Any:
    """A rich table: ``cols`` (the ``class`` column left-aligned, the others right), one row per ``rows``."""
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for col in cols:
        t.add_column(col, justify="left" if col == "class" else "right")
    for row in rows:
        t.add_row(*map(escape, row))
    return t


def _rich_tables(a: Advice, console: Console) -> None:
    """The classes table, the findings panel, the structure table and the recommendation panel."""
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table

    rows, cols, left_out = _rows(a)
    console.print(_rich_table("classes", cols, rows))
    if left_out:
        console.print(f"  ({left_out} classes without any {a.element} not shown)")
    f = Table.grid(padding=(0, 2))
    for k, v in _findings(a):
        f.add_row(k, escape(v))
    console.print(Panel(f, title="findings", title_align="left"))
    if a.structure:
        srows, scols = _structure_rows(a)
        console.print(_rich_table("structure", scols, srows))
    rec = Table.grid(padding=(0, 2))
    for k, v in _recommendation(a):
        rec.add_row(k, f"[bold]{escape(v)}[/]")
    console.print(Panel(rec, title="recommendation", title_align="left"))


def _rich_sections(a: Advice, console: Console) -> None:
    """Why, warnings, metrics to report, the evidence of each rule, the code and the skipped files."""
    from rich.markup import escape
    from rich.syntax import Syntax

    console.print("[bold]why[/]")
    for r in a.reasons:
        console.print(f"  • {escape(r)}")
    for w in a.warnings:
        console.print(f"  [yellow]! {escape(w)}[/]")
    if a.metrics:
        console.print("[bold]metrics to report[/] (Metrics Reloaded)")
        for line in _metric_lines(a):
            console.print(f"  • {escape(line)}")
    if a.evidence:
        console.print("[bold]evidence for each rule[/] (docs/analysis_plan.md)")
        for line in _evidence_lines(a):
            console.print(f"  • {escape(line)}")
    # highlighted, but never wrapped by rich: soft_wrap leaves long lines whole (the terminal may fold them on screen)
    console.print(Syntax(a.code, "python", theme="ansi_dark").highlight(a.code), soft_wrap=True)
    if a.skipped:
        console.print(f"[red]skipped {a.n_skipped} file(s):[/]")
        for s in a.skipped:
            console.print(f"  {escape(s['error'])}", soft_wrap=True)


def render_plain(advice: Advice) -> str:
    """The report as plain text: no colours, no box drawing, no wrapped line (for pipes and files)."""
    a = advice
    out = [_header(a)]
    out += [f"assumption: {s}" for s in a.assumptions]
    out += [f"note: {n}" for n in a.encoding_notes]
    rows, cols, left_out = _rows(a)
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    just = ["<" if c == "class" else ">" for c in cols]
    line = lambda r: "  " + "  ".join(f"{x:{j}{w}}" for x, j, w in zip(r, just, widths, strict=True)).rstrip()  # noqa: E731
    out += ["", "classes", line(cols)] + [line(r) for r in rows]
    if left_out:
        out.append(f"  ({left_out} classes without any {a.element} not shown)")
    f = _findings(a)
    kw = max(len(k) for k, _ in f)
    out += ["", "findings"] + [f"  {k:<{kw}}  {v}" for k, v in f]
    if a.structure:
        srows, scols = _structure_rows(a)
        sw = [max(len(c), *(len(r[i]) for r in srows)) for i, c in enumerate(scols)]
        sj = ["<" if c == "class" else ">" for c in scols]
        sline = lambda r: "  " + "  ".join(f"{x:{j}{w}}" for x, j, w in zip(r, sj, sw, strict=True)).rstrip()  # noqa: E731
        out += ["", "structure", sline(scols)] + [sline(r) for r in srows]
    rec = _recommendation(a)
    kw = max(len(k) for k, _ in rec)
    out += ["", "recommendation"] + [f"  {k:<{kw}}  {v}" for k, v in rec]
    out += ["", "why"] + [f"  - {r}" for r in a.reasons] + [f"  ! {w}" for w in a.warnings]
    if a.metrics:
        out += ["", "metrics to report (Metrics Reloaded)"] + [f"  - {line}" for line in _metric_lines(a)]
    if a.evidence:
        out += ["", "evidence for each rule (docs/analysis_plan.md)"] + [f"  - {line}" for line in _evidence_lines(a)]
    out += ["", a.code]
    if a.skipped:
        out += ["", f"skipped {a.n_skipped} file(s):"] + [f"  {s['error']}" for s in a.skipped]
    return "\n".join(out) + "\n"


def render_text(advice: Advice, width: int | None = None) -> str:
    """The report as plain text (``str(advice)``); ``width`` is accepted for compatibility and ignored:
    lines are never wrapped."""
    return render_plain(advice)
