"""Feature names: the single source of truth for every stage of the pipeline.

ExampleGen writes raw features under these names, the curated schemas declare them,
``preprocessing_fn`` reads them and writes the transformed features, and the Trainers read
the transformed names and the vocabularies. Nothing else spells a feature name.
"""

# --- Raw features written by the MovieLens ExampleGen -------------------------------------
USER_ID = "user_id"
ITEM_ID = "item_id"
ITEM_TITLE = "item_title"
ITEM_GENRES = "item_genres"  # variable-length list of genre names
TIMESTAMP = "timestamp"  # seconds since the Unix epoch
USER_RATING = "user_rating"  # label
# A declared log's interactions.weight_column: how much the retrieval loss counts the example.
# Passed through Transform unchanged; absent where none is declared (every example counts 1).
WEIGHT = "interaction_weight"

# User attributes (MovieLens 100K and 1M's demographics included) are declared user features
# (``user_feature``), never canonical ones: every layout's are read the same way.

# Features describing an item: the catalogue output of ExampleGen holds exactly these.
ITEM_FEATURES = (ITEM_ID, ITEM_TITLE, ITEM_GENRES)

# Sequential context (``data/sequences.py``): the item ids the user rated strictly before this
# rating, oldest first, left-padded with "" to the configured length.
CONTEXT_ITEMS = "context_items"

# --- Categorical features that get a tf.Transform vocabulary -------------------------------
# Vocabulary file name == raw feature name, so `vocabulary_file_by_name(USER_ID)` is obvious.
VOCAB_FEATURES = (USER_ID, ITEM_ID, ITEM_TITLE, ITEM_GENRES)

# Out-of-vocabulary buckets appended after each vocabulary (unknown users/items at serving).
NUM_OOV_BUCKETS = 1
# Quantile buckets of the timestamp, unless [transform] timestamp_buckets says otherwise.
DEFAULT_TIMESTAMP_BUCKETS = 100


INDEX_SUFFIX = "_index"


def index_name(raw_name: str) -> str:
    """Transformed name of the integer id produced by a feature's vocabulary."""
    return f"{raw_name}{INDEX_SUFFIX}"


def vocabulary_name(index_feature: str) -> str:
    """The vocabulary (named after its raw feature) whose ids an ``index_name`` feature holds."""
    if not index_feature.endswith(INDEX_SUFFIX):
        raise ValueError(f"{index_feature!r} is not a vocabulary id feature")
    return index_feature[: -len(INDEX_SUFFIX)]


# --- Declared features ([interactions] item_features, user_features) ----------------------
# A declared item table column ``brand`` is the raw feature ``item_feature_brand``, a user
# table column ``segment`` is ``user_feature_segment``: the prefixes keep a team's column names
# apart from the canonical features above, and tell every stage what a feature describes (the
# catalogue holds the item ones, the export's user table the user ones; the candidate tower
# reads the item ones, the query tower the user ones, the ranking model both). Raw values are
# lists of 0 or more: a missing value is allowed.
ITEM_FEATURE_PREFIX = "item_feature_"
USER_FEATURE_PREFIX = "user_feature_"
# A numeric feature's transformed name: its z-score (0 for a missing value, the mean).
NUMERIC_SUFFIX = "_z"
# Transform's custom_config key: {raw feature name: kind} of every declared feature.
DECLARED_FEATURES_CONFIG = "declared_features"


def item_feature(column: str) -> str:
    """Raw feature name of a declared item table column."""
    return f"{ITEM_FEATURE_PREFIX}{column}"


def user_feature(column: str) -> str:
    """Raw feature name of a declared user table column."""
    return f"{USER_FEATURE_PREFIX}{column}"


def is_item_feature(name: str) -> bool:
    """Whether a raw or transformed feature comes from a declared item column."""
    return name.startswith(ITEM_FEATURE_PREFIX)


def is_user_feature(name: str) -> bool:
    """Whether a raw or transformed feature comes from a declared user column."""
    return name.startswith(USER_FEATURE_PREFIX)


def is_declared(name: str) -> bool:
    """Whether a feature comes from a declared item or user column."""
    return is_item_feature(name) or is_user_feature(name)


def numeric_name(raw_name: str) -> str:
    """Transformed name of a declared numeric feature (its z-score)."""
    return f"{raw_name}{NUMERIC_SUFFIX}"


def declared_inputs(transformed_names, prefix: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(id-list features, numeric features) of the declared features with ``prefix`` among a
    Transform output's feature names, sorted: what the models read beside the canonical ones."""
    names = sorted(n for n in transformed_names if n.startswith(prefix))
    return (tuple(n for n in names if n.endswith(INDEX_SUFFIX)),
            tuple(n for n in names if n.endswith(NUMERIC_SUFFIX)))


def declared_item_inputs(transformed_names) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``declared_inputs`` of the item features."""
    return declared_inputs(transformed_names, ITEM_FEATURE_PREFIX)


def declared_user_inputs(transformed_names) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``declared_inputs`` of the user features."""
    return declared_inputs(transformed_names, USER_FEATURE_PREFIX)


# --- Transformed features (Transform output) ----------------------------------------------
TIMESTAMP_BUCKET = "timestamp_bucket"  # quantile bucket id, int64 in [0, timestamp_buckets)
TIMESTAMP_Z = "timestamp_z"  # z-score normalized timestamp, float32
# Title words (lower-cased alphanumeric runs, the release year included): the vocabulary is
# named after this, and the ids are a variable-length list like the genres.
ITEM_TITLE_TOKENS = "item_title_tokens"
LABEL = USER_RATING  # passed through unchanged

# Raw string ids are also passed through: serving returns them and Trainers key on them. The
# raw timestamp gives the Trainer the latest training time (the default request time).
PASSTHROUGH_FEATURES = (USER_ID, ITEM_ID, ITEM_TITLE, TIMESTAMP)

# --- Model inputs (Trainers) ---------------------------------------------------------------
# Trainers see each transformed feature as a dense batch: ids and floats as [batch], id lists
# (genres, title tokens) as [batch, longest list] int64 padded with LIST_PADDING.
LIST_PADDING = -1
ITEM_INDEX_FEATURES = (index_name(ITEM_ID), index_name(ITEM_TITLE))
GENRES_INDEX = index_name(ITEM_GENRES)
TITLE_TOKENS_INDEX = index_name(ITEM_TITLE_TOKENS)
# The id-list features of an item; TITLE_TOKENS_INDEX is absent from Transform outputs made
# before it existed, so readers take the ones a Transform output has.
ITEM_LIST_FEATURES = (GENRES_INDEX, TITLE_TOKENS_INDEX)
# Context items as item_id vocabulary ids, [batch, context length], LIST_PADDING for none.
CONTEXT_INDEX = index_name(CONTEXT_ITEMS)

# tf.Example value kind of every raw feature ("bytes", "int" or "float").
RAW_FEATURE_KINDS = {
    USER_ID: "bytes",
    ITEM_ID: "bytes",
    ITEM_TITLE: "bytes",
    ITEM_GENRES: "bytes",
    TIMESTAMP: "int",
    USER_RATING: "float",
    WEIGHT: "float",
}
