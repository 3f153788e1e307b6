"""Error types that the command line turns into one clear message and a non-zero exit."""

import re


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


class TrainingError(RecsysError):
    """Training diverged (a non-finite loss); the message names the model and the epoch."""


class ValidationError(RecsysError):
    """Data validation (TFDV) found anomalies; the message names features and anomalies."""


def find_recsys_error(error: BaseException) -> "RecsysError | None":
    """Our error inside whatever TFX or Beam wrapped it in, if it is there.

    Follows the exception chain first; Beam's portable runners re-raise worker errors as text
    only, so as a fallback the message is recovered from that text with its original class.
    """
    seen = set()
    current: "BaseException | None" = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RecsysError):
            return current
        current = current.__cause__ or current.__context__
    classes = {cls.__name__: cls for cls in RecsysError.__subclasses__()}
    match = re.search(rf"({'|'.join(classes)}): (.+?)(?: \[while running|\n|$)", str(error))
    return classes[match.group(1)](match.group(2).strip()) if match else None
