"""``recsys recommend``, ``recsys bulk``, ``recsys rollback`` and ``recsys promote``: the TF
Serving model base of a local run."""

from __future__ import annotations

import argparse
import os

from recsys_pipeline.cli.common import load_config, run_options
from recsys_pipeline.pipeline import nodes


def register(sub) -> None:
    models = ", ".join(nodes.MODEL_NAMES + nodes.OPTIONAL_MODEL_NAMES)
    rec = sub.add_parser("recommend", parents=run_options(),
                         help="recommend items from the pushed models")
    rec.add_argument("--user-id", required=True, help="user id as in the dataset, e.g. 42")
    rec.add_argument("--k", type=int, default=10, help="number of items (default 10)")
    rec.add_argument("--timestamp", type=int,
                     help="request time in Unix seconds (default: the latest training time)")
    rec.set_defaults(func=_cmd_recommend)

    bulk = sub.add_parser("bulk", parents=run_options(),
                          help="every user's top k from the served recommender, as Parquet")
    bulk.add_argument("--output", required=True, help="the Parquet file to write")
    bulk.add_argument("--k", type=int, help="items per user (default: bulk.k)")
    bulk.set_defaults(func=_cmd_bulk)

    rb = sub.add_parser("rollback", parents=run_options(),
                        help="serve an earlier pushed version again (as the newest)")
    rb.add_argument("--model", required=True, help=models)
    rb.add_argument("--to", required=True, type=int, help="the version to serve again")
    rb.set_defaults(func=_cmd_rollback)

    pr = sub.add_parser("promote", parents=run_options(),
                        help="move a model's stable label to its canary (serving.version_labels)")
    pr.add_argument("--model", required=True, help=models)
    pr.set_defaults(func=_cmd_promote)


def _cmd_recommend(args: argparse.Namespace) -> int:
    from recsys_pipeline.errors import ConfigError
    from recsys_pipeline.serving.recommend import Recommender
    from recsys_pipeline.serving.two_stage import MAX_USER_ID_LENGTH

    config = load_config(args)
    user_id = args.user_id.strip()
    if not user_id or len(user_id) > MAX_USER_ID_LENGTH:
        raise ConfigError(f"--user-id must be 1 to {MAX_USER_ID_LENGTH} characters")
    if args.k < 1:
        raise ConfigError(f"--k must be at least 1 (got {args.k})")
    result = Recommender(config.serving_dir).recommend(
        user_id, args.k, args.timestamp)
    for name, path in sorted(result.versions.items()):
        print(f"{name}: {path}")
    if not result.known_user:
        print(f"User {user_id!r} is not in the training data: showing the most popular items "
              "instead (retrieval has nothing personal to go on).")
    print(f"{'#':>3}  {'item_id':>8}  {'retrieved':>9}  {'rating':>6}  {'score':>6}  title")
    for i, r in enumerate(result.items, 1):
        found = "-" if r.retrieval_score is None else f"{r.retrieval_score:.3f}"
        print(f"{i:>3}  {r.item_id:>8}  {found:>9}  {r.predicted_rating:>6.2f}  "
              f"{r.score:>6.2f}  {r.title}")
    return 0


def _cmd_bulk(args: argparse.Namespace) -> int:
    import apache_beam as beam

    from recsys_pipeline.errors import ConfigError
    from recsys_pipeline.serving import bulk
    from recsys_pipeline.serving.recommend import served_recommender

    config = load_config(args)
    k = config.bulk.k if args.k is None else args.k
    if k < 1:
        raise ConfigError(f"--k must be at least 1 (got {k})")
    model_dir = served_recommender(config.serving_dir)
    print(f"recommending {k} items to every user of {model_dir} ...", flush=True)
    report = bulk.write(model_dir, os.path.abspath(args.output), k, config.bulk.batch_size,
                        beam.Pipeline(argv=list(config.beam.pipeline_args)))
    print(f"{report.rows} rows ({report.users} users x up to {k}) in {report.seconds:.1f}s: "
          f"{report.files[0]}")
    print(f"catalogue coverage: {report.coverage:.1%} ({report.covered} of "
          f"{report.catalogue_size} items)")
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    from recsys_pipeline.rollback import rollback
    from recsys_pipeline.serving.layout import ROLLBACK_LOG

    config = load_config(args)
    result = rollback(config.serving_dir, args.model, args.to)
    record = os.path.join(config.serving_dir, args.model, ROLLBACK_LOG)
    if result.version == args.to:
        print(f"{args.model}: the stable label now points at version {args.to} (the canary, if "
              f"any, is dropped); TF Serving picks it up at its next poll. Recorded in {record}.")
    else:
        print(f"{args.model}: version {result.version} ({result.destination}) now serves "
              f"version {args.to}'s model; TF Serving picks it up at its next poll. Recorded in "
              f"{record}.")
    return 0


def _cmd_promote(args: argparse.Namespace) -> int:
    from recsys_pipeline.serving import model_config

    config = load_config(args)
    labels = model_config.promote(config.serving_dir, args.model)
    print(f"{args.model}: stable now points at version {labels.stable}; TF Serving picks it up "
          "at its next poll of models.config.")
    return 0
