"""``recsys synth``: a synthetic MovieLens-shaped dataset with planted structure."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    syn = sub.add_parser("synth", help="write a synthetic MovieLens-shaped dataset "
                         "(GroupLens CSV layout) for scale tests")
    syn.add_argument("--ratings", required=True, type=int, help="number of ratings")
    syn.add_argument("--out", required=True, help="directory for ratings.csv and movies.csv")
    syn.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    syn.set_defaults(func=_cmd_synth)


def _cmd_synth(args: argparse.Namespace) -> int:
    from recsys_pipeline.data import synthetic
    from recsys_pipeline.errors import ConfigError

    if args.ratings < synthetic.MIN_RATINGS_PER_USER:
        raise ConfigError(f"--ratings must be at least {synthetic.MIN_RATINGS_PER_USER}")
    step = max(1, args.ratings // 10)
    reported = [0]

    def progress(written: int, total: int) -> None:
        if written - reported[0] >= step or written == total:
            reported[0] = written
            print(f"  {written:,} / {total:,} ratings", flush=True)

    shape = synthetic.generate(args.out, args.ratings, seed=args.seed, progress=progress)
    print(f"Wrote {shape.num_ratings:,} ratings by {shape.num_users:,} users of "
          f"{shape.num_movies:,} movies to {args.out} (ratings.csv, movies.csv). "
          f"Run it: recsys run --data-dir {args.out}")
    return 0
