"""ONNX graph plumbing the passes share: who produces what, tensor sizes, preparation."""
