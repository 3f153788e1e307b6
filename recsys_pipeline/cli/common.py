"""What the command groups share: parent parsers for the common options, and config loading."""

from __future__ import annotations

import argparse
import dataclasses
import logging


def config_option(help: str = "TOML or YAML config file (see recsys config)"
                  ) -> argparse.ArgumentParser:
    """A parent parser with --config."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--config", help=help)
    return parent


def output_dir_option() -> argparse.ArgumentParser:
    """A parent parser with --output-dir."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--output-dir", help="root of the run's outputs (default: ./outputs)")
    return parent


def run_options() -> list[argparse.ArgumentParser]:
    """--config and --output-dir: what every command on a local run's outputs takes."""
    return [config_option(), output_dir_option()]


def load_config(args: argparse.Namespace):
    """The validated PipelineConfig of --config, with --output-dir applied."""
    from recsys_pipeline.pipeline.config import PipelineConfig
    from recsys_pipeline.pipeline.config import load_config as load

    config = load(args.config) if args.config else PipelineConfig()
    if getattr(args, "output_dir", None):
        config = dataclasses.replace(config, output_dir=args.output_dir)
    return config.validate()


def quiet_tf_logs() -> None:
    """TFMA's readers log TensorFlow deprecation notices through absl: noise for a listing."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
