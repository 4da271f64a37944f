"""Error types shared by every part of edgereg, each with its own exit code.

Every error a user can cause (a bad file, a bad option, a missing backend) is one of
these, with a message that names the file, row or field and says what to do. The CLI
prints the message (no stack trace) and exits with the class's code.
"""

from __future__ import annotations


class EdgeregError(Exception):
    """Base class: a problem the user can fix. ``exit_code`` is what the CLI returns."""

    exit_code = 1


class DataError(EdgeregError, ValueError):
    """A dataset (labels.csv, folders, labels) is wrong."""

    exit_code = 3


class OptionError(DataError):
    """A command-line option (or its library keyword) is out of range, malformed or does
    not apply (an option of another task). Exit code 2, the code click gives its own usage
    errors: every "fix the command line" error exits 2, every "fix the data" error 3. It
    is a DataError subclass so library callers catching DataError still catch it."""

    exit_code = 2


class ImageError(EdgeregError, ValueError):
    """An image file is missing, unreadable or not an image."""

    exit_code = 4


class ModelFileError(EdgeregError, ValueError):
    """A model file (.tflite, .keras) is missing, truncated or not a model."""

    exit_code = 5


class SpecError(EdgeregError, ValueError):
    """A model spec is missing, malformed or disagrees with the model."""

    exit_code = 6


class WeightsError(EdgeregError, ValueError):
    """Pretrained weights are missing, unsafe or do not fit the model."""

    exit_code = 7


class OutputError(EdgeregError, OSError):
    """An artifact could not be written (disk full, permissions); earlier files are kept."""

    exit_code = 8


class QualityGateError(EdgeregError):
    """A model missed a quality bar the user set (e.g. ``convert --max-drop``)."""

    exit_code = 9


class BackendError(EdgeregError, RuntimeError):
    """No interpreter backend, or an accelerator delegate is missing."""

    exit_code = 10


class SourceError(EdgeregError, RuntimeError):
    """A frame source (camera, file, stream) cannot be opened."""

    exit_code = 11


class TrainingError(EdgeregError, RuntimeError):
    """Training cannot go on (e.g. the --sanity overfit check failed)."""

    exit_code = 12


class ClashError(EdgeregError, ValueError):
    """An output would overwrite an input, another output, or something it does not own."""

    exit_code = 13


class NetworkError(EdgeregError, RuntimeError):
    """A network output cannot work: its client package is missing, the broker refused the
    credentials, a certificate does not verify, or the live-view port is taken."""

    exit_code = 14


class TtaError(SpecError):
    """``--tta`` on a model whose spec declares no test-time transforms: it would change
    nothing. Exit code 2, like any other option that does not fit (``run``, ``eval`` and
    ``bench`` say it in the same words: :func:`edge_runtime.predictor.check_tta`)."""

    exit_code = 2


EXIT_CODES = {
    cls.__name__: cls.exit_code
    for cls in (
        EdgeregError,
        DataError,
        OptionError,
        ImageError,
        ModelFileError,
        SpecError,
        WeightsError,
        OutputError,
        QualityGateError,
        BackendError,
        SourceError,
        TrainingError,
        ClashError,
        NetworkError,
        TtaError,
    )
}
