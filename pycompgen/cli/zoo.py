"""``pycompgen zoo list`` / ``pycompgen zoo info NAME``: the pretrained models shipped with pycompgen."""
from __future__ import annotations

import json

from .common import add_debug


def add_parser(sub) -> None:
    z = sub.add_parser("zoo", help="pretrained models shipped with pycompgen (pycompgen.zoo)",
                       description="List the pretrained models (pycompgen/zoo/manifest.json, or $PYCOMPGEN_ZOO_DIR).")
    z.add_argument("action", choices=["list", "info"], help="list: a table of the models; info NAME: its model card")
    z.add_argument("--json", action="store_true", help="info: the manifest entry as JSON instead of the card")
    z.add_argument("name", nargs="?", help="model name (for info)")
    add_debug(z)


def run(args) -> int:
    from pycompgen import zoo
    if args.action == "list":
        print(zoo.format_list())
        return 0
    if not args.name:
        raise ValueError("zoo info needs a model name (see 'pycompgen zoo list')")
    print(json.dumps(zoo.info(args.name), indent=2) if args.json else zoo.card_text(args.name))
    return 0
