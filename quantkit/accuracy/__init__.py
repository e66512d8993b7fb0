"""Does the quantized model cut out what the original does? Measured, gated, shown.

Agreement metrics, ground-truth saliency metrics, the noise floor that puts both
in proportion, ``compare`` and its gate and HTML report, and the held-out check
and mixed-precision search that ``quantize`` runs on its own output.
"""
