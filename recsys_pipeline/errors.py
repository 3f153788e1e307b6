"""Error types that the command line turns into one clear message and a non-zero exit."""


class RecsysError(Exception):
    """An error the user can act on; its message says what is wrong and where."""

    exit_code = 2


class ConfigError(RecsysError):
    """A configuration file or flag is invalid (unknown key, wrong type, bad value)."""


class DataError(RecsysError):
    """Input data is missing or malformed; the message names the file (and line)."""


class DownloadError(RecsysError):
    """A dataset could not be downloaded or failed its checksum."""


class OutputError(RecsysError):
    """The output directory cannot be used."""


class ValidationError(RecsysError):
    """Data validation (TFDV) found anomalies; the message names features and anomalies."""
