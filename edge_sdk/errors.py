"""Exceptions raised by edge_sdk.

Every error a user can cause (a bad file, an unsupported model, a prompt that
does not fit, a board that is too small, garbage on a serial line) is one of
these, with a message that says what is wrong and what is supported.
"""

from __future__ import annotations


class EdgeSDKError(Exception):
    """Base class of every error raised on purpose by edge_sdk."""


class InvalidArgumentError(EdgeSDKError, ValueError):
    """An argument is out of range or of the wrong kind (also a ValueError)."""


class SamplingError(InvalidArgumentError):
    """A sampling parameter is out of range or of the wrong type (an `InvalidArgumentError`)."""


class ModelFileError(EdgeSDKError):
    """A model file or directory is missing, truncated, corrupt or not a model."""


class UnsupportedModelError(EdgeSDKError):
    """The file is readable but holds an architecture or feature we do not run."""


class TokenizerError(EdgeSDKError):
    """The tokenizer could not be built from the model's metadata."""


class ContextOverflowError(EdgeSDKError):
    """A prompt (plus what must be generated) does not fit in the context."""


class PackageError(EdgeSDKError):
    """A converted edge package is incomplete, tampered with or too new."""


class PackageChangedError(PackageError):
    """A file of a loaded package changed, vanished or could not be read after loading: reload the model."""


class SignatureError(PackageError):
    """A package is unsigned, or not signed by a trusted key, where trusted keys are configured."""


class BackendError(EdgeSDKError):
    """A backend failed, or cannot run on this machine."""


class NativeError(BackendError):
    """The native core returned a non-zero status."""


class PlanError(EdgeSDKError):
    """A memory plan does not fit the chosen board, or is invalid."""


class BoardError(EdgeSDKError):
    """A board profile is missing or does not match the schema."""


class BusyError(EdgeSDKError):
    """The model is serving another request and does not interleave calls."""


class ProtocolError(EdgeSDKError):
    """A frame on the serial line is malformed (bad CRC, framing, size, type)."""
