"""Activation statistics of a float model over photos, computed inside the graph.

One engine serves every pass that needs numbers about activations (offset
absorption, equalisation) and the calibration ranges quantization needs: each
declares what it needs as a :class:`~quantkit.statistics.types.StatsRequest`, the
requests are merged, and one pass over the photos answers them all.
"""
