"""Span folders: a data directory that receives new interactions as ``span-<N>`` folders.

A recurring run ingests one span at a time (TFX's notion: the Examples artifact carries the
span number). Each span folder holds the ratings file of any supported layout; the catalogue
(item and user files) is in the span folder or, shared by every span, in the parent. A data
directory without span folders is read as a whole, as before.

Which span a run takes is decided here, from the folders and from the spans this output
directory has already ingested (read from ML Metadata by the caller): ``latest`` is the
oldest span newer than every span ingested, so that a backlog is taken in time order and no
run trains on older data than the model it replaces; none left means there is nothing new to
run. A span older than the newest ingested one is taken only by number, with ``--reingest``.

The rolling window a run trains on is decided here too (``window``), from the spans that
earlier runs accepted (passed data validation): the run's own span and the newest accepted
spans before it, one ingestion per span (the newest, when a span was ingested again).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Iterable, Optional, Union

from recsys_pipeline.data import movielens
from recsys_pipeline.data.declaration import InteractionsLayout
from recsys_pipeline.errors import DataError

PREFIX = "span-"
_NAME = re.compile(r"span-(\d+)")


@dataclasses.dataclass(frozen=True)
class Span:
    """One span folder."""

    number: int
    path: str


@dataclasses.dataclass(frozen=True)
class AcceptedSpan:
    """A span that a run ingested and validated: where its Examples (and their statistics,
    for the next span's drift check) are. ``order`` says which of two ingestions of the same
    span is newer (higher: newer)."""

    number: int
    examples_uri: str
    order: int = 0
    statistics_uri: str = ""

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, record: dict) -> "AcceptedSpan":
        return cls(int(record["number"]), str(record["examples_uri"]),
                   int(record.get("order", 0)), str(record.get("statistics_uri", "")))


def window(accepted: Iterable[AcceptedSpan], current: AcceptedSpan,
           size: int) -> list[AcceptedSpan]:
    """The ``size`` spans a run on ``current`` reads, oldest first: ``current`` and the newest
    accepted spans numbered below it (spans above it are newer data than the one being
    re-run). Fewer exist: all of them (the caller says so)."""
    if size < 1:
        raise ValueError(f"a window holds at least one span, not {size}")
    older = _newest_ingestions(accepted, below=current.number)[-(size - 1):] if size > 1 else []
    return [*older, current]


def previous(accepted: Iterable[AcceptedSpan], current: AcceptedSpan) -> Optional[AcceptedSpan]:
    """The newest accepted span numbered below ``current`` (the one its drift is measured
    against), or None."""
    older = _newest_ingestions(accepted, below=current.number)
    return older[-1] if older else None


def _newest_ingestions(accepted: Iterable[AcceptedSpan],
                       below: Optional[int] = None) -> list[AcceptedSpan]:
    """The newest ingestion of each span (numbered below ``below``), oldest span first."""
    newest: dict[int, AcceptedSpan] = {}
    for span in accepted:
        if (below is None or span.number < below) and (
                span.number not in newest or span.order >= newest[span.number].order):
            newest[span.number] = span
    return [newest[n] for n in sorted(newest)]


def history(accepted: Iterable[AcceptedSpan], limit: int) -> list[AcceptedSpan]:
    """The newest ingestion of each of the ``limit`` highest-numbered spans, oldest first:
    what a window record keeps for the windows after it."""
    return _newest_ingestions(accepted)[-limit:]


def list_spans(data_dir: str) -> list[Span]:
    """The span folders of ``data_dir``, oldest first (empty: not a spanned directory).

    A folder named ``span...`` that is not ``span-<integer>``, two folders holding the same
    number (``span-7``, ``span-07``) and an empty span folder are refused, by name.
    """
    gfile = movielens.filesystem()
    if not data_dir or not gfile.isdir(data_dir):
        return []
    by_number: dict[int, list[str]] = {}
    for entry in sorted(name.rstrip("/") for name in gfile.listdir(data_dir)):
        path = os.path.join(data_dir, entry)
        if not entry.lower().startswith("span") or not gfile.isdir(path):
            continue
        match = _NAME.fullmatch(entry)
        if match is None:
            raise DataError(f"span folder {path!r} is not named span-<integer> (e.g. "
                            "span-20261201): rename it, or move it out of the data directory")
        if not gfile.listdir(path):
            raise DataError(f"span folder {path!r} is empty: a span holds a ratings file "
                            "(u.data, ratings.dat or ratings.csv)")
        by_number.setdefault(int(match.group(1)), []).append(entry)
    for number, names in by_number.items():
        if len(names) > 1:
            raise DataError(f"{data_dir!r}: the folders {', '.join(names)} all hold span "
                            f"{number}; keep one")
    return [Span(n, os.path.join(data_dir, names[0])) for n, names in sorted(by_number.items())]


def choose_span(spans: list[Span], requested: Union[str, int], ingested: Iterable[int],
                reingest: bool = False, data_dir: str = "", output_dir: str = ""
                ) -> Optional[Span]:
    """The span a run ingests: ``"latest"`` (the oldest span newer than every span ingested;
    None when there is none) or a span number (refused when absent, or when ingested or older
    than the newest ingested, unless ``reingest``)."""
    done = set(ingested)
    newest = max(done, default=None)
    listing = ", ".join(str(s.number) for s in spans) or "none"
    if requested == "latest":
        fresh = [s for s in spans if newest is None or s.number > newest]
        return fresh[0] if fresh else None
    try:
        number = int(requested)
    except (TypeError, ValueError):
        raise DataError(f"--span {requested!r}: expected latest or a span number") from None
    found = [s for s in spans if s.number == number]
    if not found:
        raise DataError(f"there is no span {number} in {data_dir!r} (spans: {listing})")
    if number in done and not reingest:
        raise DataError(f"span {number} was already ingested into {output_dir!r}; pass "
                        "--reingest to ingest it again")
    if newest is not None and number < newest and not reingest:
        raise DataError(f"span {number} is older than span {newest}, the newest ingested into "
                        f"{output_dir!r}: a model trained on it would replace one trained on "
                        "newer data. Pass --reingest to take it anyway")
    return found[0]


def passed_over(spans: list[Span], ingested: Iterable[int]) -> list[Span]:
    """Spans never ingested that ``latest`` will not take: older than the newest ingested."""
    done = set(ingested)
    newest = max(done, default=None)
    return [s for s in spans if newest is not None and s.number < newest
            and s.number not in done]


def span_dataset(data_dir: str, number: int, layout: Optional[str] = None,
                 declaration: Optional[InteractionsLayout] = None) -> movielens.Dataset:
    """The dataset of span ``number`` of ``data_dir``: its ratings, the catalogue beside them
    or in ``data_dir`` (``declaration``: the declared layout's files). A span whose catalogue
    is in neither place is refused, by name."""
    spans = {s.number: s for s in list_spans(data_dir)}
    if number not in spans:
        listing = ", ".join(map(str, spans)) or "none"
        raise DataError(f"there is no span {number} in {data_dir!r} (spans: {listing})")
    span = spans[number]
    try:
        return movielens.detect_layout(span.path, layout, catalogue_dir=data_dir,
                                       declaration=declaration)
    except DataError as e:
        if layout == movielens.INTERACTIONS.kind:
            raise DataError(f"span {number}: {e}") from None
        gfile = movielens.filesystem()
        present = {name.rstrip("/") for name in gfile.listdir(span.path)}
        shared = {name.rstrip("/") for name in gfile.listdir(data_dir)}
        for spec in movielens.LAYOUTS.values():
            wanted = [f for f in (spec.movies_file, spec.users_file) if f]
            if spec.ratings_file in present and not any(
                    all(f in names for f in wanted) for names in (present, shared)):
                raise DataError(f"span {number} ({span.path}) has {spec.ratings_file} but no "
                                f"catalogue: {' and '.join(wanted)} must be in the span "
                                f"folder or in {data_dir}") from None
        raise DataError(f"span {number}: {e}") from None
