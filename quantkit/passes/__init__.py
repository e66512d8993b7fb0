"""The algorithms of a recipe: float rewrites before quantization, passes after it.

One module per algorithm; a recipe (:mod:`quantkit.passes.recipes`) is a list of
them. Adding an algorithm is one module implementing
:class:`~quantkit.passes.base.FloatRewrite` or :class:`~quantkit.passes.base.PostPass`
and one entry in a recipe; the pipeline collects its statistics, the CLI table
and ``--json`` show its report.
"""
