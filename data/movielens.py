"""MovieLens layouts: detection, streaming parsers and the rating/item/user join.

Three GroupLens layouts are understood:

* ``ml-100k``: ``u.data`` (tab-separated ratings), ``u.item`` (``|``-separated, latin-1, 19
  genre flags named by ``u.genre``) and ``u.user`` (demographics);
* ``ml-1m``: ``ratings.dat``, ``movies.dat`` (latin-1) and ``users.dat``, ``::``-separated;
* ``csv``: ``ratings.csv`` and ``movies.csv`` with headers, UTF-8 (ml-latest-small, ml-25m,
  ml-32m); no demographics.

Ratings are streamed line by line (never held in memory); items and users are small tables
loaded into dicts. Every problem raises :class:`DataError` naming the file and line.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import time
from collections.abc import Iterator
from typing import Any, Optional

from recsys_pipeline.data import interactions
from recsys_pipeline.data.declaration import InteractionsLayout
from recsys_pipeline.errors import DataError
from recsys_pipeline.transform import features as F

# Genre names of MovieLens 100K in flag order, used when u.genre is absent.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)

# MovieLens 1M encodes occupations as integers; names from the dataset's README.
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)

CSV_NO_GENRES = "(no genres listed)"
# The demographics the model learns from (not the zip code, too sparse), as a declaration
# names them: the raw features user_feature_age, ..._gender, ..._occupation.
DECLARED_DEMOGRAPHICS = ["age:categorical", "gender:categorical", "occupation:categorical"]


@dataclasses.dataclass(frozen=True)
class LayoutSpec:
    """Static description of one GroupLens file layout."""

    kind: str
    ratings_file: str
    movies_file: str
    users_file: Optional[str]
    separator: str
    text_encoding: str  # of the items/users files
    allowed_ratings: tuple[float, ...]
    ratings_header: Optional[tuple[str, ...]] = None
    movies_header: Optional[tuple[str, ...]] = None

    @property
    def has_demographics(self) -> bool:
        return self.users_file is not None


LAYOUTS: dict[str, LayoutSpec] = {
    "ml-100k": LayoutSpec(
        kind="ml-100k", ratings_file="u.data", movies_file="u.item", users_file="u.user",
        separator="\t", text_encoding="latin-1", allowed_ratings=(1.0, 2.0, 3.0, 4.0, 5.0),
    ),
    "ml-1m": LayoutSpec(
        kind="ml-1m", ratings_file="ratings.dat", movies_file="movies.dat",
        users_file="users.dat", separator="::", text_encoding="latin-1",
        allowed_ratings=(1.0, 2.0, 3.0, 4.0, 5.0),
    ),
    "csv": LayoutSpec(
        kind="csv", ratings_file="ratings.csv", movies_file="movies.csv", users_file=None,
        separator=",", text_encoding="utf-8",
        allowed_ratings=tuple(x / 2 for x in range(1, 11)),
        ratings_header=("userId", "movieId", "rating", "timestamp"),
        movies_header=("movieId", "title", "genres"),
    ),
}

# The declared layout: its files and columns come from the [interactions] section.
INTERACTIONS = LayoutSpec(kind=interactions.KIND, ratings_file="", movies_file="", users_file=None,
                          separator=",", text_encoding="utf-8", allowed_ratings=())


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A MovieLens layout found in a concrete directory.

    The catalogue (item, user and genre files) is in ``catalogue_dir`` when set -- a span
    folder's parent, shared by its spans -- and beside the ratings otherwise.
    """

    spec: LayoutSpec
    data_dir: str
    catalogue_dir: Optional[str] = None
    # The declared layout (data/interactions.py): its interaction files and item table.
    declaration: Optional[InteractionsLayout] = None
    files: tuple[str, ...] = ()
    items_file: Optional[str] = None
    users_table: Optional[str] = None

    def path(self, name: str) -> str:
        return os.path.join(self.data_dir, name)

    def catalogue_path(self, name: str) -> str:
        return os.path.join(self.catalogue_dir or self.data_dir, name)

    @property
    def ratings_path(self) -> str:
        if self.declaration is not None:
            return self.files[0] if len(self.files) == 1 else self.path(self.declaration.files)
        return self.path(self.spec.ratings_file)

    @property
    def items_path(self) -> str:
        if self.declaration is not None:
            return self.items_file or "(no item table)"
        return self.catalogue_path(self.spec.movies_file)

    def sources(self) -> list[Dataset]:
        """The dataset one interaction file at a time (Beam reads them in parallel)."""
        if self.declaration is None:
            return [self]
        return [dataclasses.replace(self, files=(f,)) for f in self.files]

    @property
    def users_path(self) -> Optional[str]:
        if self.declaration is not None:
            return self.users_table
        return self.catalogue_path(self.spec.users_file) if self.spec.users_file else None


def filesystem():
    """``tf.io.gfile``, which reads local paths and gs:// alike; imported lazily so that the
    command line's --help does not pay for TensorFlow."""
    import tensorflow as tf

    return tf.io.gfile


def detect_layout(data_dir: str, expected: Optional[str] = None,
                  catalogue_dir: Optional[str] = None,
                  declaration: Optional[InteractionsLayout] = None) -> Dataset:
    """Finds which MovieLens layout ``data_dir`` holds (or checks it holds ``expected``); with
    ``expected`` "interactions", the files ``declaration`` names.

    With ``catalogue_dir``, the item and user files (or the item table) may be there instead
    of beside the ratings (a span folder and its parent).
    """
    gfile = filesystem()
    if not data_dir or not gfile.exists(data_dir):
        raise DataError(
            f"data directory {data_dir!r} does not exist. Pass --data-dir DIR, set "
            "RECSYS_DATA_DIR, or leave both unset to download the configured dataset."
        )
    if not gfile.isdir(data_dir):
        raise DataError(f"data directory {data_dir!r} is a file, not a directory.")
    if expected == interactions.KIND:
        if declaration is None:
            raise DataError("data.layout = \"interactions\" needs the [interactions] "
                            "declaration of the files and columns")
        return Dataset(spec=INTERACTIONS, data_dir=data_dir, catalogue_dir=catalogue_dir,
                       declaration=declaration,
                       files=tuple(interactions.interaction_files(declaration, data_dir)),
                       items_file=interactions.table_path(declaration, "items_file", data_dir,
                                                          catalogue_dir),
                       users_table=interactions.table_path(declaration, "users_file", data_dir,
                                                           catalogue_dir))
    present = {name.rstrip("/") for name in gfile.listdir(data_dir)}
    shared = ({name.rstrip("/") for name in gfile.listdir(catalogue_dir)}
              if catalogue_dir and gfile.isdir(catalogue_dir) else set())

    def catalogue_in(names: set[str], spec: LayoutSpec) -> bool:
        return spec.movies_file in names and (spec.users_file is None or
                                              spec.users_file in names)

    found = [spec for spec in LAYOUTS.values() if spec.ratings_file in present
             and (catalogue_in(present, spec) or catalogue_in(shared, spec))]
    if not found:
        expected_files = "; ".join(
            f"{k}: {' + '.join(f for f in (s.ratings_file, s.movies_file, s.users_file) if f)}"
            for k, s in LAYOUTS.items()
        )
        listing = ", ".join(sorted(present)[:10]) or "nothing"
        raise DataError(
            f"{data_dir!r} holds no known MovieLens layout (it has: {listing}). "
            f"Expected one of: {expected_files}."
        )
    spec = found[0]
    if expected and expected != "auto" and spec.kind != expected:
        raise DataError(
            f"{data_dir!r} holds the {spec.kind} layout, but the configuration expects "
            f"{expected!r} (data.layout). Set data.layout = \"{spec.kind}\" or \"auto\"."
        )
    own = catalogue_in(present, spec)
    return Dataset(spec=spec, data_dir=data_dir, catalogue_dir=None if own else catalogue_dir)


def fingerprint(dataset: Dataset) -> str:
    """A cheap fingerprint (names, sizes, mtimes) of the dataset's files, for TFX caching."""
    if dataset.declaration is not None:
        return interactions.fingerprint(
            [*dataset.files, *filter(None, [dataset.items_file, dataset.users_table])])
    gfile = filesystem()
    h = hashlib.sha256(dataset.spec.kind.encode())
    for path in (dataset.ratings_path, dataset.items_path, dataset.users_path,
                 dataset.catalogue_path("u.genre")):
        if path and gfile.exists(path):
            st = gfile.stat(path)
            h.update(f"{os.path.basename(path)}:{st.length}:{st.mtime_nsec}".encode())
    return h.hexdigest()[:16]


def iter_lines(path: str, encoding: str) -> Iterator[tuple[int, str]]:
    """Yields (1-based line number, decoded line without newline), streaming the file."""
    name = os.path.basename(path)
    looks_latin1 = encoding == "latin-1"
    with filesystem().GFile(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            raw = raw.rstrip(b"\r\n")
            if looks_latin1 and not raw.isascii():
                # latin-1 decodes any byte string, so a file re-saved as UTF-8 would silently
                # become mojibake ("CafÃ©"); real latin-1 text is almost never valid UTF-8.
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    pass
                else:
                    raise DataError(
                        f"{path} line {line_no}: text looks UTF-8 encoded, but {name} must be "
                        "latin-1 as distributed by GroupLens. Re-download the original file."
                    )
            try:
                yield line_no, raw.decode(encoding)
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path} line {line_no}: not valid {encoding} (byte 0x{raw[e.start]:02x} at "
                    f"column {e.start + 1}); {name} must be {encoding}-encoded."
                ) from None


def _split(line: str, sep: str, n: int, path: str, line_no: int, what: str) -> list[str]:
    fields = line.split(sep)
    if len(fields) != n:
        shown = line if len(line) <= 80 else line[:77] + "..."
        raise DataError(
            f"{path} line {line_no}: expected {n} {sep!r}-separated fields ({what}), got "
            f"{len(fields)}: {shown!r}"
        )
    return fields


def _id(value: str, field: str, path: str, line_no: int) -> str:
    value = value.strip()
    if not value.isdigit():
        raise DataError(f"{path} line {line_no}: {field} must be a positive integer, got {value!r}")
    return value


# Seconds from here on are past the year 5138: such a timestamp is milliseconds (any date
# after 1973 is above it in milliseconds).
MILLISECONDS_FROM = 100_000_000_000
FUTURE_SLACK_S = 86_400  # a day of clock skew between the log's writer and this machine


@dataclasses.dataclass(frozen=True)
class Rating:
    user_id: str
    item_id: str
    rating: float
    timestamp: int
    line_no: int
    where: str = ""  # "<file> line N" or "<file> row N", where a layout has several files
    weight: Optional[float] = None  # a declared log's interactions.weight_column


def parse_rating(spec: LayoutSpec, line: str, path: str, line_no: int) -> Rating:
    """Parses and validates one ratings line."""
    what = "user id, item id, rating, timestamp"
    user, item, rating_s, ts_s = _split(line, spec.separator, 4, path, line_no, what)
    user_id = _id(user, "user id", path, line_no)
    item_id = _id(item, "item id", path, line_no)
    try:
        rating = float(rating_s)
    except ValueError:
        raise DataError(f"{path} line {line_no}: rating {rating_s!r} is not a number") from None
    if rating not in spec.allowed_ratings:
        lo, hi = spec.allowed_ratings[0], spec.allowed_ratings[-1]
        step = spec.allowed_ratings[1] - lo
        raise DataError(
            f"{path} line {line_no}: rating {rating_s!r} is outside the {spec.kind} scale "
            f"({lo:g} to {hi:g} in steps of {step:g})"
        )
    ts_s = ts_s.strip()
    if not ts_s.lstrip("-").isdigit():
        raise DataError(
            f"{path} line {line_no}: timestamp {ts_s!r} is not an integer (seconds since 1970)"
        )
    timestamp = int(ts_s)
    if timestamp < 0:
        raise DataError(f"{path} line {line_no}: timestamp {timestamp} is negative")
    if timestamp >= MILLISECONDS_FROM:
        raise DataError(
            f"{path} line {line_no}: timestamp {timestamp} looks like milliseconds (as "
            f"seconds it is in the year {_year(timestamp)}); the ratings' timestamps are "
            f"seconds since 1970: divide them by 1000")
    if timestamp > time.time() + FUTURE_SLACK_S:
        raise DataError(
            f"{path} line {line_no}: timestamp {timestamp} ({_date(timestamp)}) lies in the "
            "future: check the clock of whatever wrote the log")
    return Rating(user_id, item_id, rating, timestamp, line_no)


def _year(timestamp: int) -> int:
    return 1970 + int(timestamp // 31_556_952)  # mean Gregorian year, in seconds


def _date(timestamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


def iter_ratings(dataset: Dataset) -> Iterator[Rating]:
    """Streams validated ratings; raises DataError at the first bad line."""
    if dataset.declaration is not None:
        for path in dataset.files:
            yield from interactions.iter_interactions(dataset.declaration, path)
        return
    spec, path = dataset.spec, dataset.ratings_path
    lines = iter_lines(path, "utf-8")
    empty = True
    for line_no, line in lines:
        if spec.ratings_header and line_no == 1:
            _check_header(line, spec.ratings_header, path)
            continue
        if not line.strip():
            continue
        empty = False
        yield parse_rating(spec, line, path, line_no)
    if empty:
        raise DataError(f"{path}: the ratings file holds no ratings")


def _check_header(line: str, expected: tuple[str, ...], path: str) -> None:
    got = tuple(h.strip() for h in line.split(","))
    if got != expected:
        raise DataError(
            f"{path} line 1: header {','.join(got)!r} is not the GroupLens header "
            f"{','.join(expected)!r}"
        )


@dataclasses.dataclass(frozen=True)
class Item:
    item_id: str
    title: str
    genres: tuple[str, ...]
    # Declared item features ([interactions] item_features): (raw feature name, values),
    # values text for the vocabulary kinds and floats for the numeric ones, () when missing.
    features: tuple[tuple[str, tuple], ...] = ()


def _genre_names(dataset: Dataset) -> tuple[str, ...]:
    path = dataset.catalogue_path("u.genre")
    if not filesystem().exists(path):
        return ML100K_GENRES
    names = {}
    for line_no, line in iter_lines(path, "latin-1"):
        if not line.strip():
            continue
        name, index = _split(line, "|", 2, path, line_no, "genre name, index")
        if not index.isdigit():
            raise DataError(f"{path} line {line_no}: genre index {index!r} is not an integer")
        names[int(index)] = name
    if sorted(names) != list(range(len(names))):
        raise DataError(f"{path}: genre indices are not 0..{len(names) - 1}")
    return tuple(names[i] for i in range(len(names)))


def load_items(dataset: Dataset) -> dict[str, Item]:
    """Reads the item table (the full catalogue) keyed by item id; a declared layout
    without an item table has none ({}: the catalogue is what the log names)."""
    if dataset.declaration is not None:
        return (interactions.load_items(dataset.declaration, dataset.items_file)
                if dataset.items_file else {})
    spec, path = dataset.spec, dataset.items_path
    items: dict[str, Item] = {}
    lines = iter_lines(path, spec.text_encoding)
    if spec.kind == "ml-100k":
        genre_names = _genre_names(dataset)
        n = 5 + len(genre_names)
        for line_no, line in lines:
            if not line.strip():
                continue
            fields = _split(line, "|", n, path, line_no,
                            f"item id, title, 3 dates/URL, {len(genre_names)} genre flags")
            item_id = _id(fields[0], "item id", path, line_no)
            flags = fields[5:]
            if any(flag not in ("0", "1") for flag in flags):
                raise DataError(f"{path} line {line_no}: genre flags must be 0 or 1, got {flags}")
            genres = tuple(g for g, flag in zip(genre_names, flags, strict=True) if flag == "1")
            _add_item(items, Item(item_id, fields[1].strip(), genres), path, line_no)
    elif spec.kind == "ml-1m":
        for line_no, line in lines:
            if not line.strip():
                continue
            item, title, genre_text = _split(line, "::", 3, path, line_no,
                                              "item id, title, genres")
            item_id = _id(item, "item id", path, line_no)
            _add_item(items, Item(item_id, title.strip(), _genre_list(genre_text)), path,
                       line_no)
    else:
        # Parsed line by line (titles never span lines) so errors can name the line.
        for line_no, line in lines:
            if line_no == 1:
                _check_header(line, spec.movies_header or (), path)
                continue
            if not line.strip():
                continue
            row = next(csv.reader([line]))
            if len(row) != 3:
                raise DataError(
                    f"{path} line {line_no}: expected 3 CSV fields (movieId, title, genres), "
                    f"got {len(row)}: {line[:80]!r}"
                )
            item_id = _id(row[0], "item id", path, line_no)
            genres = () if row[2] == CSV_NO_GENRES else _genre_list(row[2])
            _add_item(items, Item(item_id, row[1].strip(), genres), path, line_no)
    if not items:
        raise DataError(f"{path}: the item file holds no items")
    return items


def preset(kind: str) -> InteractionsLayout:
    """What a MovieLens layout declares whatever its directory holds: the rating values, a
    repeated pair refused, the demographics (100K, 1M) as categorical user features. The
    pipeline reads its features and rating bounds at compile time; ExampleGen reads the
    files with ``declared_as``."""
    spec = LAYOUTS[kind]
    allowed = list(spec.allowed_ratings)
    return InteractionsLayout(rating_values=allowed, min_rating=min(allowed),
                              max_rating=max(allowed), repeats="refuse",
                              user_features=list(DECLARED_DEMOGRAPHICS)
                              if spec.has_demographics else [])


def declared_as(dataset: Dataset) -> InteractionsLayout:
    """The declaration (``[interactions]``) that reads a MovieLens directory's ratings and
    items as this module's parsers do: the ``preset``, and for 100K and 1M headerless,
    separated files and a latin-1 item table, genres from flags (100K, named by ``u.genre``)
    or ``|``-joined (1M's occupations as their codes)."""
    static = preset(dataset.spec.kind)
    return dataclasses.replace(_declared_files(dataset), rating_values=static.rating_values,
                               min_rating=static.min_rating, max_rating=static.max_rating,
                               repeats=static.repeats, user_features=static.user_features)


def as_declared(dataset: Dataset, declaration: InteractionsLayout) -> Dataset:
    """A MovieLens dataset read through ``declaration`` (its ``declared_as``), as ExampleGen
    reads every layout: the same files, streamed by the declared log's readers."""
    return dataclasses.replace(
        dataset, declaration=declaration, files=(dataset.ratings_path,),
        items_file=dataset.items_path, users_table=dataset.users_path)


def _declared_files(dataset: Dataset) -> InteractionsLayout:
    kind, spec = dataset.spec.kind, dataset.spec
    columns = ["user_id", "item_id", "rating", "timestamp"]
    if kind == "ml-100k":
        genres = list(_genre_names(dataset))
        return InteractionsLayout(
            files=spec.ratings_file, format="csv", delimiter="\t", header=columns,
            items_file=spec.movies_file, items_delimiter="|", items_encoding="latin-1",
            items_header=["item_id", "title", "release_date", "video_release_date", "url",
                          *genres],
            title_column="title", category_flag_columns=genres,
            users_file=spec.users_file or "", users_delimiter="|", users_encoding="latin-1",
            users_header=["user_id", "age", "gender", "occupation", "zip_code"])
    if kind == "ml-1m":
        return InteractionsLayout(
            files=spec.ratings_file, format="csv", delimiter="::", header=columns,
            items_file=spec.movies_file, items_delimiter="::", items_encoding="latin-1",
            items_header=["item_id", "title", "genres"], title_column="title",
            categories_column="genres", users_file=spec.users_file or "",
            users_delimiter="::", users_encoding="latin-1",
            users_header=["user_id", "gender", "age", "occupation", "zip_code"])
    return InteractionsLayout(
        files=spec.ratings_file, format="csv", user_column="userId", item_column="movieId",
        items_file=spec.movies_file, item_id_column="movieId", title_column="title",
        categories_column="genres", no_categories_value=CSV_NO_GENRES)


def _genre_list(value: str) -> tuple[str, ...]:
    return tuple(g for g in value.strip().split("|") if g)


def _add_item(items: dict[str, Item], item: Item, path: str, line_no: int) -> None:
    if item.item_id in items:
        raise DataError(f"{path} line {line_no}: item id {item.item_id} appears twice")
    items[item.item_id] = item


@dataclasses.dataclass(frozen=True)
class User:
    user_id: str
    gender: str
    age: int
    occupation: str
    zip_code: str

    def raw_features(self) -> dict[str, list]:
        """The demographics as the declared user features ``preset`` names (age a category;
        the zip code, too sparse to learn from, left out)."""
        return {F.user_feature("age"): [str(self.age).encode()],
                F.user_feature("gender"): [self.gender.encode()],
                F.user_feature("occupation"): [self.occupation.encode("utf-8")]}


@dataclasses.dataclass(frozen=True)
class DeclaredUser:
    """A row of a declared log's user table: (raw feature name, values) per declared user
    feature, as ``Item.features``."""

    user_id: str
    features: tuple[tuple[str, tuple], ...] = ()

    def raw_features(self) -> dict[str, list]:
        return _encoded(self.features)


def load_users(dataset: Dataset) -> Optional[dict[str, Any]]:
    """Reads user demographics (``User``), or a declared log's user table
    (``DeclaredUser``), keyed by user id; None for layouts without either."""
    spec, path = dataset.spec, dataset.users_path
    if path is None:
        return None
    if dataset.declaration is not None:
        return interactions.load_users(dataset.declaration, path)
    users: dict[str, User] = {}
    for line_no, line in iter_lines(path, spec.text_encoding):
        if not line.strip():
            continue
        if spec.kind == "ml-100k":
            uid, age, gender, occupation, zip_code = _split(
                line, "|", 5, path, line_no, "user id, age, gender, occupation, zip code")
        else:
            uid, gender, age, occupation, zip_code = _split(
                line, "::", 5, path, line_no, "user id, gender, age, occupation, zip code")
            if not occupation.isdigit() or int(occupation) >= len(ML1M_OCCUPATIONS):
                raise DataError(
                    f"{path} line {line_no}: occupation code {occupation!r} is not 0-"
                    f"{len(ML1M_OCCUPATIONS) - 1}"
                )
            occupation = ML1M_OCCUPATIONS[int(occupation)]
        uid = _id(uid, "user id", path, line_no)
        if not age.strip().isdigit():
            raise DataError(f"{path} line {line_no}: age {age!r} is not an integer")
        if gender not in ("M", "F"):
            raise DataError(f"{path} line {line_no}: gender {gender!r} is not M or F")
        if uid in users:
            raise DataError(f"{path} line {line_no}: user id {uid} appears twice")
        users[uid] = User(uid, gender, int(age), occupation.strip(), zip_code.strip())
    return users


def join_features(
    rating: Rating, item: Item, user: Optional[User | DeclaredUser]
) -> dict[str, list]:
    """The raw feature dict of one example: a rating joined with its item and user."""
    feats: dict[str, list] = {
        F.USER_ID: [rating.user_id.encode()],
        F.ITEM_ID: [item.item_id.encode()],
        F.ITEM_TITLE: [item.title.encode("utf-8")],
        F.ITEM_GENRES: [g.encode("utf-8") for g in item.genres],
        **_encoded(item.features),
        F.TIMESTAMP: [rating.timestamp],
        F.USER_RATING: [rating.rating],
    }
    if rating.weight is not None:
        feats[F.WEIGHT] = [rating.weight]
    if user is not None:
        feats.update(user.raw_features())
    return feats


def _encoded(features: tuple[tuple[str, tuple], ...]) -> dict[str, list]:
    """Declared feature values as raw feature values (text as UTF-8 bytes)."""
    return {name: [v.encode("utf-8") if isinstance(v, str) else v for v in values]
            for name, values in features}


def item_features(item: Item) -> dict[str, list]:
    """The raw feature dict of one catalogue entry."""
    return {
        F.ITEM_ID: [item.item_id.encode()],
        F.ITEM_TITLE: [item.title.encode("utf-8")],
        F.ITEM_GENRES: [g.encode("utf-8") for g in item.genres],
        **_encoded(item.features),
    }
