"""Checkpoint readers: one module per file format, chosen by sniffing the file's content.

Every reader returns a `base.RawCheckpoint` whose tensors are lazy; `sniff` tells the
formats apart, and `bnstat.stages.open_checkpoint` picks the reader. None of the readers
imports torch; the ONNX reader imports `onnx` only when it meets an ONNX file.
"""
