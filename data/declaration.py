"""The declaration of a team's own interaction log: the ``[interactions]`` section.

Kept apart from the readers (``data/interactions.py``) so that the configuration can hold it
without importing them: only ExampleGen runs the readers, and only it re-runs when they
change (pipeline/fingerprint.py).
"""

from __future__ import annotations

import codecs
import math
import os
from dataclasses import dataclass

from recsys_pipeline.knobs import knob

KIND = "interactions"
FORMATS = ("auto", "csv", "parquet")
TIMESTAMP_UNITS = ("seconds", "milliseconds", "iso8601")
REPEATS = ("newest", "refuse")
# What a declared feature is, and so how Transform encodes it (transform/preprocessing.py):
# a vocabulary id, a bag of vocabulary ids, a bag of word ids, or a z-score (of log(1 + x)).
CATEGORICAL, MULTI_CATEGORICAL, TEXT = "categorical", "multi_categorical", "text"
NUMERIC, LOG_NUMERIC = "numeric", "log_numeric"
FEATURE_KINDS = (CATEGORICAL, MULTI_CATEGORICAL, TEXT, NUMERIC, LOG_NUMERIC)


# The CSV files of a declaration: the log's, the item table's and the user table's (the key
# prefix of each one's dialect options: "", "items_", "users_").
TABLES = ("interactions", "items", "users")
_PREFIX = {"interactions": "", "items": "items_", "users": "users_"}


@dataclass(frozen=True)
class CsvDialect:
    """How one table's CSV files are written: field separator, column names when the files
    have no header row (empty: the first row is the header), text encoding."""

    delimiter: str = ","
    header: tuple[str, ...] = ()
    encoding: str = "utf-8"


def _delimiter_knob(what: str) -> str:
    return knob(",", f"Field separator of {what} CSV files: one character (e.g. \"\\t\" for "
                "tab-separated exports) or a longer string, split on as is (e.g. \"::\", "
                "without quoting).")


def _header_knob(what: str) -> list:
    return knob([], f"Column names of {what} CSV files that have no header row, in file "
                "order. Empty: the first row is the header.")


def _encoding_knob(what: str) -> str:
    return knob("utf-8", f"Text encoding of {what} CSV files (e.g. \"latin-1\").")


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
    delimiter: str = _delimiter_knob("the interaction")
    header: list = _header_knob("the interaction")
    encoding: str = _encoding_knob("the interaction")
    rating_column: str = knob("rating", "Column holding the rating (a number).")
    min_rating: float = knob(1.0, "Lowest rating the log may hold.")
    max_rating: float = knob(5.0, "Highest rating the log may hold.")
    rating_values: list = knob(
        [], "The only ratings the log may hold, when not every number in [min_rating, "
        "max_rating] is one (e.g. [1, 2, 3, 4, 5]). Empty: any number in the range.")
    repeats: str = knob(
        "newest", "A user's repeated interactions with one item: newest (keep the newest, "
        "count the others) or refuse (where a repeat means a damaged or twice-delivered "
        "file: the run stops, naming both lines).")
    weight_column: str = knob(
        "", "Column holding each interaction's weight (a finite number >= 0, e.g. a count or "
        "a watch time), by which the retrieval loss counts it. Empty: every interaction "
        "counts 1.")
    items_file: str = knob(
        "",
        "The item table (CSV with a header row, or Parquet), in the data directory (or, with "
        "span folders, in each span folder or in their parent). Empty: no table; the "
        "catalogue is every item the log names, titled by its id.")
    items_delimiter: str = _delimiter_knob("the item table's")
    items_header: list = _header_knob("the item table's")
    items_encoding: str = _encoding_knob("the item table's")
    item_id_column: str = knob("item_id", "Item table column holding the item id.")
    title_column: str = knob(
        "", "Item table column with the item's display title, also split into words for the "
        "model. Empty: the item id.")
    categories_column: str = knob(
        "", "Item table column with the item's categories or tags (separator-joined text, or a "
        "Parquet list), learned as an item's genres are. Empty: none.")
    no_categories_value: str = knob(
        "", "A categories_column value that means none (e.g. MovieLens' \"(no genres "
        "listed)\"). Empty: only an empty value does.")
    category_flag_columns: list = knob(
        [], "Item table columns each holding 0 or 1, named for a category (e.g. MovieLens "
        "100K's genre flags): an item's categories are the names of those set to 1, after "
        "categories_column's. Empty: none.")
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
    users_delimiter: str = _delimiter_knob("the user table's")
    users_header: list = _header_knob("the user table's")
    users_encoding: str = _encoding_knob("the user table's")
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
        if self.repeats not in REPEATS:
            found.append(f"interactions.repeats is {self.repeats!r}; expected one of {REPEATS}")
        outside = [v for v in self.rating_values if isinstance(v, bool)
                   or not isinstance(v, (int, float))
                   or not self.min_rating <= v <= self.max_rating]
        if outside:
            found.append(f"interactions.rating_values holds {outside[0]!r}, not a number in "
                         f"[{self.min_rating:g}, {self.max_rating:g}] (min_rating, max_rating)")
        if self.categories_column and not self.categories_separator:
            found.append("interactions.categories_separator is empty")
        found += self._feature_problems()
        found += self._dialect_problems()
        return found

    def dialect(self, table: str) -> CsvDialect:
        """The CSV dialect of ``table`` ("interactions", "items" or "users")."""
        prefix = _PREFIX[table]
        return CsvDialect(getattr(self, f"{prefix}delimiter"),
                          tuple(str(c) for c in getattr(self, f"{prefix}header")),
                          getattr(self, f"{prefix}encoding"))

    def _dialect_problems(self) -> list[str]:
        found = []
        for table in TABLES:
            prefix = _PREFIX[table]
            dialect = self.dialect(table)
            delimiter, header, encoding = dialect.delimiter, getattr(self, f"{prefix}header"), \
                dialect.encoding
            if not delimiter or any(c in delimiter for c in "\r\n\""):
                found.append(f"interactions.{prefix}delimiter is {delimiter!r}; expected a "
                             "field separator (not empty, no quote or line break)")
            names = [str(c).strip() for c in header]
            if not all(names) or not all(isinstance(c, str) for c in header):
                found.append(f"interactions.{prefix}header {header!r} holds an empty name")
            elif len(set(names)) != len(names):
                repeated = sorted({c for c in names if names.count(c) > 1})[0]
                found.append(f"interactions.{prefix}header names {repeated!r} twice")
            try:
                codecs.lookup(encoding)
            except LookupError:
                found.append(f"interactions.{prefix}encoding {encoding!r} is not a text "
                             "encoding Python knows (e.g. utf-8, latin-1)")
        for table, columns in (("interactions", self.interaction_columns()),
                               ("items", self.item_columns()),
                               ("users", self.user_columns())):
            header = [str(c).strip() for c in getattr(self, f"{_PREFIX[table]}header")]
            missing = [c for c in columns if header and c not in header]
            if missing:
                found.append(f"interactions.{_PREFIX[table]}header does not name column "
                             f"{missing[0]!r}, which the declaration reads (it names: "
                             f"{', '.join(header)})")
        return found

    def interaction_columns(self) -> list[str]:
        """The columns read from each interaction file."""
        return [self.user_column, self.item_column, self.timestamp_column,
                self.rating_column] + ([self.weight_column] if self.weight_column else [])

    def item_columns(self) -> list[str]:
        """The columns read from the item table (none without one)."""
        if not self.items_file:
            return []
        return list(dict.fromkeys(
            c for c in (self.item_id_column, self.title_column, self.categories_column,
                        *self.category_flag_columns,
                        *(f.column for f in self._parsed(self.item_features))) if c))

    def user_columns(self) -> list[str]:
        """The columns read from the user table (none without one)."""
        if not self.users_file:
            return []
        return list(dict.fromkeys([self.user_id_column, *(f.column for f in self._parsed(
            self.user_features))]))

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
