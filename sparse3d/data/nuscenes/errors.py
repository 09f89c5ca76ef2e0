"""The error raised for malformed nuScenes databases, splits and submissions."""


class NuScenesFormatError(ValueError):
    """Bad nuScenes input: the message names the file, the field and what was expected.

    Command-line front ends print the message and exit non-zero instead of a traceback.
    """
