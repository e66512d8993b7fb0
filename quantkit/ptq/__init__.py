"""Post-training quantization: the pipeline from FP32 file to INT8 file, and its parts."""
