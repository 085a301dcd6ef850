"""versions, devices, the active fused loss backend (or why none) and installed extras

``seglab info [--json]``: :func:`seglab.info.info` as text (:func:`seglab.info.format_text`) or one JSON object.
"""

from __future__ import annotations

import argparse
import json

from seglab.info import format_text, info


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``seglab info``."""
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    """Print the report; always exit 0."""
    d = info()
    print(json.dumps(d, indent=1) if args.json else format_text(d))
    return 0
