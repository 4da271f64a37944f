"""edgereg: labelled camera images -> fine-tuned MobileNet -> quantized TFLite -> a number on a Pi."""

__version__ = "0.1.0"
