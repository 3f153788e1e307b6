"""A team's own interaction log, read as its declaration says (``data.layout = "interactions"``).

The MovieLens layouts fix file names, separators and columns. A team's log has its own: a
click or rating export in CSV or Parquet, split over several files, with its own column names
and timestamp format, and an item table beside it. The ``[interactions]`` section declares
them, and this module reads them into the same ``Rating`` and ``Item`` records the MovieLens
parsers produce, so that everything after ExampleGen is unchanged:

* interaction files: a name or glob (relative to the data directory, or to each span folder),
  CSV with a header row or Parquet, read one file at a time and streamed (CSV line by line,
  Parquet batch by batch); each row's user id, item id, timestamp and rating;
* the item table (optional): id, and optionally a title and a categories (tags) column, which
  feed the model as an item's title and genres do, and declared features of any kind
  (``item_features``). Without one, the catalogue is every item the log names, titled by its
  id;
* the user table (optional): id and declared features (``user_features``).

Every problem raises :class:`DataError` naming the file, the column and the line (CSV) or row
(Parquet, counted from 1 over the file's data rows).
"""

from __future__ import annotations

import codecs
import csv
import datetime
import hashlib
import io
import math
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any, Optional

from recsys_pipeline.data.declaration import (
    KIND,
    LOG_NUMERIC,
    MULTI_CATEGORICAL,
    CsvDialect,
    DeclaredFeature,
    InteractionsLayout,
)
from recsys_pipeline.errors import DataError

# Seconds from here on are past the year 5138, and milliseconds below it are before 1973.
MILLISECONDS_FROM = 100_000_000_000
FUTURE_SLACK_S = 86_400  # a day of clock skew between the log's writer and this machine
PARQUET_BATCH_ROWS = 65_536


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def interaction_files(layout: InteractionsLayout, folder: str) -> list[str]:
    """The interaction files of ``folder`` (sorted); refuses a pattern matching none."""
    gfile = _gfile()
    if not gfile.isdir(folder):
        raise DataError(f"data directory {folder!r} does not exist or is not a directory")
    pattern = layout.files
    # tf.io.gfile.glob reads local paths and gs:// alike; names starting with a dot or an
    # underscore are a writer's temporary or marker files (Spark's _SUCCESS), never data.
    found = sorted(p for p in gfile.glob(os.path.join(folder, pattern))
                   if not os.path.basename(p.rstrip("/")).startswith((".", "_"))
                   and not gfile.isdir(p))
    if not found:
        listing = ", ".join(sorted(n.rstrip("/") for n in gfile.listdir(folder))[:10])
        raise DataError(f"interactions.files {pattern!r} matches no file in {folder!r} (it "
                        f"has: {listing or 'nothing'})")
    return found


def table_path(layout: InteractionsLayout, key: str, folder: str,
               shared_folder: Optional[str] = None) -> Optional[str]:
    """Where the item or user table (``key``: "items_file" or "users_file") is: in
    ``folder``, else ``shared_folder``; None when none is declared."""
    name = getattr(layout, key)
    if not name:
        return None
    gfile = _gfile()
    for place in (folder, shared_folder):
        if place and gfile.exists(os.path.join(place, name)):
            return os.path.join(place, name)
    where = " or ".join(repr(p) for p in (folder, shared_folder) if p)
    raise DataError(f"interactions.{key} {name!r} is in neither {where}")


def fingerprint(paths: Iterable[str]) -> str:
    """A cheap fingerprint (names, sizes, mtimes) of the files, for TFX caching."""
    gfile = _gfile()
    h = hashlib.sha256(KIND.encode())
    for path in paths:
        st = gfile.stat(path)
        h.update(f"{os.path.basename(path)}:{st.length}:{st.mtime_nsec}".encode())
    return h.hexdigest()[:16]


# --- Rows ----------------------------------------------------------------------------------

def _decoded(raw_lines: Iterable[bytes], path: str, encoding: str) -> Iterator[str]:
    utf8 = codecs.lookup(encoding).name == "utf-8"
    latin1 = codecs.lookup(encoding).name == "iso8859-1"
    for n, raw in enumerate(raw_lines, start=1):
        if latin1 and not raw.isascii() and _is_utf8(raw):
            # latin-1 decodes any bytes, so a file re-saved as UTF-8 would silently become
            # mojibake ("CafÃ©"); real latin-1 text is almost never valid UTF-8.
            raise DataError(f"{path} line {n}: text looks UTF-8 encoded, but the file is "
                            f"declared {encoding}: declare encoding \"utf-8\" "
                            "(interactions.encoding, items_encoding, users_encoding), or, for "
                            "a GroupLens file, re-download the original")
        try:
            # utf-8-sig on the first line: spreadsheet exports start with a byte-order mark.
            yield raw.decode("utf-8-sig" if utf8 and n == 1 else encoding)
        except UnicodeDecodeError as e:
            raise DataError(f"{path} line {n}: not valid {'UTF-8' if utf8 else encoding} "
                            f"(byte 0x{raw[e.start]:02x} "
                            f"at column {e.start + 1}): declare the file's encoding "
                            "(interactions.encoding, items_encoding, users_encoding)") from None


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _split_lines(lines: Iterable[str], delimiter: str) -> Iterator[list[str]]:
    """Fields of each line split on a separator of several characters, which the csv module
    cannot read (MovieLens 1M's "::"); such files have no quoting."""
    for line in lines:
        line = line.rstrip("\r\n")
        yield line.split(delimiter) if line else []


def _csv_rows(path: str, columns: list[str], dialect: CsvDialect
              ) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, {column: text}) per data line of a CSV file, streaming; its columns are named
    by its header row, or by the declared ``dialect.header`` when it has none."""
    with _gfile().GFile(path, "rb") as f:
        lines = _decoded(f, path, dialect.encoding)
        split = len(dialect.delimiter) > 1
        reader: Any = (_split_lines(lines, dialect.delimiter) if split
                       else csv.reader(lines, delimiter=dialect.delimiter))
        line = 0
        if dialect.header:
            header = list(dialect.header)
            named_by = "the declared header"
        else:
            try:
                header = [h.strip() for h in next(reader)]
            except StopIteration:
                raise DataError(f"{path}: the file is empty (expected a header row)") from None
            line, named_by = 1, "the header"
        index = {}
        for column in columns:
            if column not in header:
                raise DataError(f"{path}: column {column!r} is missing (the header has: "
                                f"{', '.join(header)})")
            index[column] = header.index(column)
        try:
            for fields in reader:
                # The csv module counts the lines a quoted field spans; split lines are one.
                line = line + 1 if split else reader.line_num
                where = f"{path} line {line}"
                if not fields or fields == [""]:
                    continue
                if len(fields) != len(header):
                    raise DataError(f"{where}: {len(fields)} fields, but {named_by} has "
                                    f"{len(header)} (separator {dialect.delimiter!r})")
                yield where, {c: fields[i] for c, i in index.items()}
        except csv.Error as e:
            raise DataError(f"{path} line {reader.line_num}: {e}") from None


class _GFileReader(io.RawIOBase):
    """A ``tf.io.gfile`` file as the seekable binary file pyarrow reads (gs:// and others)."""

    def __init__(self, path: str):
        self._f = _gfile().GFile(path, "rb")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._f.seek(offset, whence)
        return self._f.tell()

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, buffer) -> int:
        data = self._f.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._f.close()
        super().close()


def _open_binary(path: str) -> io.IOBase:
    if "://" not in path:
        return open(path, "rb")
    return io.BufferedReader(_GFileReader(path))


def _parquet_rows(path: str, columns: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, {column: value}) per row of a Parquet file, batch by batch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with _open_binary(path) as f:
        try:
            parquet = pq.ParquetFile(f)
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"{path}: not a readable Parquet file ({e})") from None
        names = parquet.schema_arrow.names
        missing = [c for c in columns if c not in names]
        if missing:
            raise DataError(f"{path}: column {missing[0]!r} is missing (the file has: "
                            f"{', '.join(names)})")
        row = 0
        try:
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
                values = {c: batch.column(c).to_pylist() for c in columns}
                for i in range(batch.num_rows):
                    row += 1
                    yield f"{path} row {row}", {c: values[c][i] for c in columns}
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"{path} after row {row}: not a readable Parquet file ({e})") from None


def rows(layout: InteractionsLayout, path: str, columns: list[str], table: str
         ) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, {column: value}) per data row of one file of ``table`` ("interactions",
    "items" or "users"); every column must be there."""
    if layout.format_of(path) == "parquet":
        return _parquet_rows(path, columns)
    return _csv_rows(path, columns, layout.dialect(table))


def _identifier(value: Any, column: str, where: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{where}: {column} is empty (every row needs one)")
    if isinstance(value, bool) or isinstance(value, float):
        raise DataError(f"{where}: {column} {value!r} is not an id (text or an integer)")
    if isinstance(value, (int, str)):
        return str(value).strip()
    raise DataError(f"{where}: {column} {value!r} is not an id (text or an integer)")


def _date(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def timestamp_seconds(value: Any, unit: str, column: str, where: str) -> int:
    """Whole seconds since 1970 of one timestamp in the declared ``unit``."""
    if isinstance(value, datetime.datetime):  # a Parquet timestamp column
        moment = value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
        seconds = int(moment.timestamp())
    elif unit == "iso8601":
        if not isinstance(value, str):
            raise DataError(f"{where}: {column} {value!r} is not an ISO 8601 text "
                            "(interactions.timestamp_unit = \"iso8601\")")
        try:
            moment = datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            raise DataError(f"{where}: {column} {value!r} is not an ISO 8601 time (e.g. "
                            "2026-11-30T14:05:00Z)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        seconds = int(moment.timestamp())
    else:
        text = str(value).strip() if value is not None else ""
        if isinstance(value, float) or not text.lstrip("-").isdigit():
            raise DataError(f"{where}: {column} {value!r} is not an integer ({unit} since "
                            "1970, interactions.timestamp_unit)")
        number = int(text)
        if number < 0:
            raise DataError(f"{where}: {column} {number} is negative")
        if unit == "seconds" and number >= MILLISECONDS_FROM:
            raise DataError(f"{where}: {column} {number} looks like milliseconds (as seconds "
                            f"it is after the year 5000): set interactions.timestamp_unit = "
                            "\"milliseconds\"")
        if unit == "milliseconds" and 0 < number < MILLISECONDS_FROM:
            raise DataError(f"{where}: {column} {number} looks like seconds (as milliseconds "
                            f"it is {_date(number / 1000)}): set interactions.timestamp_unit "
                            "= \"seconds\"")
        seconds = number // 1000 if unit == "milliseconds" else number
    if seconds < 0:
        raise DataError(f"{where}: {column} {value!r} is before 1970")
    if seconds > time.time() + FUTURE_SLACK_S:
        raise DataError(f"{where}: {column} {value!r} ({_date(seconds)}) lies in the future: "
                        "check the clock of whatever wrote the log")
    return seconds


def _number(value: Any) -> Optional[float]:
    """``value`` as a float (NaN and infinities included), or None if it is no number."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _rating(value: Any, layout: InteractionsLayout, where: str) -> float:
    column = layout.rating_column
    rating = _number(value)
    if rating is None:
        raise DataError(f"{where}: {column} {value!r} is not a number")
    if not math.isfinite(rating) or not layout.min_rating <= rating <= layout.max_rating:
        raise DataError(f"{where}: {column} {value!r} is outside [{layout.min_rating:g}, "
                        f"{layout.max_rating:g}] (interactions.min_rating, max_rating)")
    if layout.rating_values and rating not in layout.rating_values:
        allowed = ", ".join(f"{v:g}" for v in layout.rating_values)
        raise DataError(f"{where}: {column} {value!r} is not one of the log's ratings "
                        f"({allowed}; interactions.rating_values)")
    return rating


def _weight(value: Any, layout: InteractionsLayout, where: str) -> float:
    column = layout.weight_column
    weight = _number(value)
    if weight is None or not math.isfinite(weight):
        raise DataError(f"{where}: {column} {value!r} is not a finite number (the "
                        "interaction's weight, interactions.weight_column)")
    if weight < 0:
        raise DataError(f"{where}: {column} {value!r} is negative: a weight counts an "
                        "interaction in the loss, 0 or more")
    return weight


def iter_interactions(layout: InteractionsLayout, path: str) -> Iterator:
    """Streams one interaction file's validated rows as ``movielens.Rating`` records."""
    from recsys_pipeline.data.movielens import Rating  # movielens reads through this module

    empty = True
    for n, (where, row) in enumerate(rows(layout, path, layout.interaction_columns(),
                                          "interactions"), start=1):
        empty = False
        yield Rating(
            user_id=_identifier(row[layout.user_column], layout.user_column, where),
            item_id=_identifier(row[layout.item_column], layout.item_column, where),
            rating=_rating(row[layout.rating_column], layout, where),
            timestamp=timestamp_seconds(row[layout.timestamp_column], layout.timestamp_unit,
                                        layout.timestamp_column, where),
            line_no=n,
            where=where,
            weight=_weight(row[layout.weight_column], layout, where)
            if layout.weight_column else None,
        )
    if empty:
        raise DataError(f"{path}: the file holds no interactions")


def _split_values(value: Any, column: str, separator: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value if v is not None]
    elif isinstance(value, str):
        items = [v.strip() for v in value.split(separator)]
    else:
        raise DataError(f"{where}: {column} {value!r} is neither text nor a list")
    return tuple(dict.fromkeys(v for v in items if v))


def _flag(value: Any, column: str, where: str) -> bool:
    """One category flag (interactions.category_flag_columns): 0 or 1, as text or a number."""
    if isinstance(value, bool):
        return value
    text = str(value).strip() if value is not None else ""
    if text in ("0", "1"):
        return text == "1"
    if isinstance(value, (int, float)) and value in (0, 1):
        return value == 1
    raise DataError(f"{where}: {column} {value!r} is not a flag (0 or 1; "
                    "interactions.category_flag_columns)")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def feature_values(feature: DeclaredFeature, value: Any, separator: str,
                   where: str) -> tuple:
    """One item's value of a declared feature as the values ExampleGen writes: () when
    missing, text for the vocabulary kinds, a float for the numeric ones."""
    column, kind = feature.column, feature.kind
    if kind == MULTI_CATEGORICAL:
        return _split_values(value, column, separator, where)
    if _missing(value):
        return ()
    if isinstance(value, (list, tuple)):
        raise DataError(f"{where}: {column} holds a list; declare it \"{column}:"
                        f"{MULTI_CATEGORICAL}\" (interactions.item_features)")
    if feature.numeric:
        number = _number(value)
        if number is None or not math.isfinite(number):
            raise DataError(f"{where}: {column} {value!r} is not a finite number (declared "
                            f"{kind})")
        if kind == LOG_NUMERIC and number < 0:
            raise DataError(f"{where}: {column} {value!r} is negative, and {LOG_NUMERIC} takes "
                            "log(1 + x): declare it numeric")
        return (number,)
    if isinstance(value, (bool, float)):
        raise DataError(f"{where}: {column} {value!r} is not text or an integer (declared "
                        f"{kind})")
    return (str(value).strip(),)


def _declared_values(features: list[DeclaredFeature], raw_name, row: dict, separator: str,
                     where: str) -> tuple[tuple[str, tuple], ...]:
    return tuple((raw_name(f.column), feature_values(f, row[f.column], separator, where))
                 for f in features)


def iter_items(layout: InteractionsLayout, path: str) -> Iterator[tuple[str, Any]]:
    """Streams the item table's validated rows as (where, ``movielens.Item``)."""
    from recsys_pipeline.data.movielens import Item
    from recsys_pipeline.transform import features as F

    declared = layout.declared_item_features()
    separator = layout.categories_separator
    empty = True
    for where, row in rows(layout, path, layout.item_columns(), "items"):
        empty = False
        item_id = _identifier(row[layout.item_id_column], layout.item_id_column, where)
        title = row[layout.title_column] if layout.title_column else None
        title = str(title).strip() if title is not None and str(title).strip() else item_id
        categories = (_split_values(row[layout.categories_column], layout.categories_column,
                                    separator, where) if layout.categories_column else ())
        if layout.no_categories_value and categories == (layout.no_categories_value,):
            categories = ()
        flagged = tuple(c for c in layout.category_flag_columns
                        if _flag(row[c], c, where) and c not in categories)
        categories += flagged
        yield where, Item(item_id, title, categories, _declared_values(
            declared, F.item_feature, row, separator, where))
    if empty:
        raise DataError(f"{path}: the item table holds no items")


def iter_users(layout: InteractionsLayout, path: str) -> Iterator[tuple[str, Any]]:
    """Streams the user table's validated rows as (where, ``movielens.DeclaredUser``)."""
    from recsys_pipeline.data.movielens import DeclaredUser
    from recsys_pipeline.transform import features as F

    declared = layout.declared_user_features()
    empty = True
    for where, row in rows(layout, path, layout.user_columns(), "users"):
        empty = False
        user_id = _identifier(row[layout.user_id_column], layout.user_id_column, where)
        yield where, DeclaredUser(user_id, _declared_values(
            declared, F.user_feature, row, layout.categories_separator, where))
    if empty:
        raise DataError(f"{path}: the user table holds no users")


def twice(table: str, key: str, first: str, again: str) -> DataError:
    """The error of an id listed twice in the item or user table (``table``)."""
    return DataError(f"{again}: {table} id {key!r} appears twice in the {table} table (first "
                     f"at {first})")


def _keyed(table: str, rows: Iterator[tuple[str, Any]], key) -> dict:
    found: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for where, record in rows:
        k = key(record)
        if k in found:
            raise twice(table, k, seen[k], where)
        found[k], seen[k] = record, where
    return found


def load_items(layout: InteractionsLayout, path: str) -> dict:
    """The item table as one dict keyed by item id, for tools and tests; ExampleGen streams
    it (``iter_items``)."""
    return _keyed("item", iter_items(layout, path), lambda item: item.item_id)


def load_users(layout: InteractionsLayout, path: str) -> dict:
    """The user table as one dict keyed by user id, for tools and tests; ExampleGen streams
    it (``iter_users``)."""
    return _keyed("user", iter_users(layout, path), lambda user: user.user_id)
