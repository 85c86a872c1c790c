"""Writing recalibrated statistics back into checkpoints, every format in one place.

`target` decides where an output may go and in which format, `checkpoint` patches torch
and safetensors files (and TorchScript and `.pt2` archives) byte for byte, `convert`
writes the other format family, and `onnx` rewrites an ONNX model's initializers.
"""
