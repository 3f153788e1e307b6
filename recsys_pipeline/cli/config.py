"""``recsys config``: the effective configuration as documented TOML."""

from __future__ import annotations

import argparse

from recsys_pipeline.cli.common import config_option, load_config


def register(sub) -> None:
    cfg = sub.add_parser("config", parents=[config_option("TOML or YAML config file to start "
                                                          "from")],
                         help="print the effective configuration as documented TOML")
    cfg.add_argument("--markdown", action="store_true",
                     help="print it as the Markdown page docs/configuration.md")
    cfg.set_defaults(func=_cmd_config)


def _cmd_config(args: argparse.Namespace) -> int:
    from recsys_pipeline.pipeline.config import reference_page, render_toml

    config = load_config(args)
    print(reference_page(config) if args.markdown else render_toml(config), end="")
    return 0
