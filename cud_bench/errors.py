"""The one exception type whose message is meant for the user.

The CLI prints its message (no traceback) and exits with status 2; library
code raises it (or a subclass) for bad input, missing data and corrupted files.
"""


class CudBenchError(Exception):
    """Bad input, missing data or a corrupted file, explained in one message."""


class DataError(CudBenchError):
    """A data file is missing, unreadable or fails its checksum."""
