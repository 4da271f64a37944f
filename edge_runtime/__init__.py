"""edgereg's device runtime: camera frames in, numbers out, with no TensorFlow.

Imports nothing from ``train`` or ``convert``; depends on numpy, OpenCV and one TFLite
interpreter backend (``ai_edge_litert`` preferred, ``tflite_runtime`` supported).
"""

from .spec import ModelSpec, SpecError

__all__ = ["ModelSpec", "SpecError"]
