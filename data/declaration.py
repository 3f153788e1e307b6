"""The declaration of a team's own interaction log: the ``[interactions]`` section.

Kept apart from the readers (``data/interactions.py``) so that the configuration can hold it
without importing them: only ExampleGen runs the readers, and only it re-runs when they
change (pipeline/fingerprint.py).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from recsys_pipeline.knobs import knob

KIND = "interactions"
FORMATS = ("auto", "csv", "parquet")
TIMESTAMP_UNITS = ("seconds", "milliseconds", "iso8601")
# What a declared feature is, and so how Transform encodes it (transform/preprocessing.py):
# a vocabulary id, a bag of vocabulary ids, a bag of word ids, or a z-score (of log(1 + x)).
CATEGORICAL, MULTI_CATEGORICAL, TEXT = "categorical", "multi_categorical", "text"
NUMERIC, LOG_NUMERIC = "numeric", "log_numeric"
FEATURE_KINDS = (CATEGORICAL, MULTI_CATEGORICAL, TEXT, NUMERIC, LOG_NUMERIC)


@dataclass(frozen=True)
class DeclaredFeature:
    """One declared column of the item or user table: its name there and its kind."""

    column: str
    kind: str

    @property
    def numeric(self) -> bool:
        return self.kind in (NUMERIC, LOG_NUMERIC)


@dataclass
class InteractionsLayout:
    """[interactions] Your own log (data.layout = "interactions"): which files, which columns.
    See docs/own-data.md."""

    files: str = knob(
        "interactions.csv",
        "Interaction files: a name or glob (e.g. \"clicks-*.parquet\") relative to the data "
        "directory, or to each span folder. CSV files need a header row.")
    format: str = knob(
        "auto", "csv, parquet, or auto (by each file's extension: .parquet is Parquet, "
        "anything else CSV).")
    user_column: str = knob("user_id", "Column holding the user id (text or integer).")
    item_column: str = knob("item_id", "Column holding the item id (text or integer).")
    timestamp_column: str = knob("timestamp", "Column holding when the interaction happened.")
    timestamp_unit: str = knob(
        "seconds",
        "seconds or milliseconds since 1970 (integers), or iso8601 (e.g. "
        "2026-11-30T14:05:00Z; a time without a zone is UTC). A Parquet timestamp column is "
        "read as such, whatever this says.")
    rating_column: str = knob("rating", "Column holding the rating (a number).")
    min_rating: float = knob(1.0, "Lowest rating the log may hold.")
    max_rating: float = knob(5.0, "Highest rating the log may hold.")
    weight_column: str = knob(
        "", "Column holding each interaction's weight (a finite number >= 0, e.g. a count or "
        "a watch time), by which the retrieval loss counts it. Empty: every interaction "
        "counts 1.")
    items_file: str = knob(
        "",
        "The item table (CSV with a header row, or Parquet), in the data directory (or, with "
        "span folders, in each span folder or in their parent). Empty: no table; the "
        "catalogue is every item the log names, titled by its id.")
    item_id_column: str = knob("item_id", "Item table column holding the item id.")
    title_column: str = knob(
        "", "Item table column with the item's display title, also split into words for the "
        "model. Empty: the item id.")
    categories_column: str = knob(
        "", "Item table column with the item's categories or tags (separator-joined text, or a "
        "Parquet list), learned as an item's genres are. Empty: none.")
    categories_separator: str = knob(
        "|", "Separator of the text values of categories_column and of multi_categorical "
        "features.")
    item_features: list = knob(
        [],
        "Item table columns the model learns from, each as \"column:kind\": categorical "
        "(one value, e.g. a brand), multi_categorical (separator-joined text or a Parquet "
        "list, e.g. tags), text (split into words), numeric (z-scored) or log_numeric "
        "(log(1 + x), then z-scored; x >= 0). A missing value is allowed: no id, or the mean. "
        "Needs items_file.")
    users_file: str = knob(
        "",
        "The user table (CSV with a header row, or Parquet), found as items_file is. Empty: "
        "no user features.")
    user_id_column: str = knob("user_id", "User table column holding the user id.")
    user_features: list = knob(
        [],
        "User table columns the model learns from, as item_features (e.g. "
        "[\"segment:categorical\", \"age:numeric\"]). A user missing from the table has "
        "no values (no ids, the means). Needs users_file.")

    def problems(self) -> list[str]:
        """What is wrong with the declaration itself, as 'interactions.<key> ...' lines."""
        found = []
        if self.format not in FORMATS:
            found.append(f"interactions.format is {self.format!r}; expected one of {FORMATS}")
        if self.timestamp_unit not in TIMESTAMP_UNITS:
            found.append(f"interactions.timestamp_unit is {self.timestamp_unit!r}; expected one "
                         f"of {TIMESTAMP_UNITS}")
        for key in ("files", "user_column", "item_column", "timestamp_column", "rating_column",
                    "item_id_column"):
            if not getattr(self, key).strip():
                found.append(f"interactions.{key} is empty")
        if os.path.isabs(self.files) or self.files.startswith(".."):
            found.append(f"interactions.files is {self.files!r}; expected a name or glob "
                         "relative to the data directory")
        columns = [self.user_column, self.item_column, self.timestamp_column,
                   self.rating_column] + ([self.weight_column] if self.weight_column else [])
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            found.append(f"interactions: column {repeated[0]!r} is declared for two fields")
        if not (math.isfinite(self.min_rating) and math.isfinite(self.max_rating)
                and self.min_rating < self.max_rating):
            found.append(f"interactions.min_rating ({self.min_rating}) must be below "
                         f"max_rating ({self.max_rating})")
        if self.categories_column and not self.categories_separator:
            found.append("interactions.categories_separator is empty")
        found += self._feature_problems()
        return found

    def _feature_problems(self) -> list[str]:
        found = []
        for table in ("item", "user"):
            key, entries = f"{table}_features", getattr(self, f"{table}_features")
            id_column, file_key = getattr(self, f"{table}_id_column"), f"{table}s_file"
            seen: set[str] = set()
            for entry in entries:
                column, _, kind = str(entry).rpartition(":")
                column = column.strip()
                if not isinstance(entry, str) or not column:
                    found.append(f"interactions.{key} entry {entry!r} is not \"column:kind\"")
                elif kind.strip() not in FEATURE_KINDS:
                    found.append(f"interactions.{key} {entry!r}: unknown kind "
                                 f"{kind.strip()!r}; expected one of {FEATURE_KINDS}")
                elif column in seen:
                    found.append(f"interactions.{key} declares column {column!r} twice")
                elif column == id_column:
                    found.append(f"interactions.{key} {entry!r}: {column!r} is the {table} "
                                 "id column, which the model already learns from")
                seen.add(column)
            if entries and not getattr(self, file_key):
                found.append(f"interactions.{key} needs interactions.{file_key} (the table "
                             "the features are read from)")
        kinds = [f.kind for f in self.declared_item_features() + self.declared_user_features()]
        if MULTI_CATEGORICAL in kinds and not self.categories_separator:
            found.append("interactions.categories_separator is empty")
        return found

    @staticmethod
    def _parsed(entries: list) -> list[DeclaredFeature]:
        out = []
        for entry in entries:
            column, _, kind = str(entry).rpartition(":")
            out.append(DeclaredFeature(column.strip(), kind.strip()))
        return out

    def declared_item_features(self) -> list[DeclaredFeature]:
        """The item features, parsed (call after ``problems()`` found none)."""
        return self._parsed(self.item_features)

    def declared_user_features(self) -> list[DeclaredFeature]:
        """The user features, parsed (call after ``problems()`` found none)."""
        return self._parsed(self.user_features)

    def format_of(self, path: str) -> str:
        if self.format != "auto":
            return self.format
        return "parquet" if path.lower().endswith((".parquet", ".pq")) else "csv"
