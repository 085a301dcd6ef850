"""Reports of results folders: study-layout figures, summary heat maps, HTML page, terminal table.

Example::

    from seglab.report import render_report
    render_report("results/demo")          # -> results/demo/report/index.html + PNGs
"""

from .render import render_report, terminal_class_tables, terminal_table

__all__ = ["render_report", "terminal_class_tables", "terminal_table"]
