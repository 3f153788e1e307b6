"""``recsys synth``: a synthetic MovieLens-shaped dataset with planted structure, whole or
as daily span folders (``--days``)."""

from __future__ import annotations

import argparse
import os


def register(sub) -> None:
    syn = sub.add_parser("synth", help="write a synthetic MovieLens-shaped dataset "
                         "(GroupLens CSV layout) for scale tests")
    syn.add_argument("--ratings", type=int, help="number of ratings (one dataset)")
    syn.add_argument("--days", type=int, help="daily span folders instead: how many days")
    syn.add_argument("--ratings-per-day", type=int, default=30_000,
                     help="with --days: ratings each day (default 30000)")
    syn.add_argument("--out", required=True, help="directory for ratings.csv and movies.csv, "
                     "or for the span-<YYYYMMDD> folders")
    syn.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    syn.add_argument("--layout", choices=("csv", "interactions"), default="csv",
                     help="with --ratings: csv (GroupLens ratings.csv + movies.csv, the "
                     "default) or interactions (a shop's log with its own columns, a product "
                     "table, a customer table and the recsys.toml declaring them)")
    syn.add_argument("--format", choices=("csv", "parquet"), default="csv",
                     help="with --layout interactions: the files' format (default csv)")
    syn.set_defaults(func=_cmd_synth)


def _cmd_synth(args: argparse.Namespace) -> int:
    from recsys_pipeline.data import synthetic
    from recsys_pipeline.errors import ConfigError

    if (args.ratings is None) == (args.days is None):
        raise ConfigError("recsys synth takes --ratings N (one dataset) or --days D "
                          "[--ratings-per-day R] (daily spans)")
    if args.days is not None:
        if args.layout != "csv" or args.format != "csv":
            raise ConfigError("--layout and --format apply to --ratings; --days writes the "
                              "GroupLens CSV layout")
        return _synth_days(args)
    if args.layout == "csv" and args.format != "csv":
        raise ConfigError("--format parquet needs --layout interactions")
    if args.ratings < synthetic.MIN_RATINGS_PER_USER:
        raise ConfigError(f"--ratings must be at least {synthetic.MIN_RATINGS_PER_USER}")
    step = max(1, args.ratings // 10)
    reported = [0]

    def progress(written: int, total: int) -> None:
        if written - reported[0] >= step or written == total:
            reported[0] = written
            print(f"  {written:,} / {total:,} ratings", flush=True)

    shape = synthetic.generate(args.out, args.ratings, seed=args.seed, progress=progress,
                               layout=args.layout, fmt=args.format)
    if args.layout == "csv":
        print(f"Wrote {shape.num_ratings:,} ratings by {shape.num_users:,} users of "
              f"{shape.num_items:,} items to {args.out} (ratings.csv, movies.csv). "
              f"Run it: recsys run --data-dir {args.out}")
        return 0
    layout = synthetic.declaration(args.format)
    config = os.path.join(args.out, synthetic.DECLARED_CONFIG)
    print(f"Wrote {shape.num_ratings:,} ratings by {shape.num_users:,} customers of "
          f"{shape.num_items:,} products to {args.out} ({layout.files}, {layout.items_file}, "
          f"{layout.users_file}, "
          f"and {synthetic.DECLARED_CONFIG} declaring them). Run it: recsys run --config "
          f"{config} --data-dir {args.out}")
    return 0


def _synth_days(args: argparse.Namespace) -> int:
    from recsys_pipeline.data import arrivals
    from recsys_pipeline.errors import ConfigError

    if args.days < 1 or args.ratings_per_day < 1:
        raise ConfigError("--days and --ratings-per-day must be at least 1")
    if args.days > arrivals.max_days():
        raise ConfigError(f"--days {args.days}: the days start on {arrivals.FIRST_DAY}, so at "
                          f"most {arrivals.max_days()} of them end before today (ExampleGen "
                          "refuses ratings from the future)")

    def progress(day: int, days: int) -> None:
        print(f"  day {day}/{days}: span-{arrivals.span_number(day - 1)}", flush=True)

    shape = arrivals.generate_days(args.out, args.days, args.ratings_per_day, seed=args.seed,
                                   progress=progress)
    print(f"Wrote {shape.days} daily spans of {shape.ratings_per_day:,} ratings ("
          f"{shape.num_users:,} users and {shape.num_items:,} items over all days) to "
          f"{args.out}. Run them in order: recsys run --data-dir {args.out} --span "
          f"{arrivals.span_number(0)}, then --span {arrivals.span_number(1)}, ...")
    return 0
