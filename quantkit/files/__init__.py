"""Everything quantkit writes goes through here: one guard, atomic writes, scratch space.

The rules this package enforces for every command: nothing that is an input is
ever written, nothing quantkit did not create is ever replaced (``--force``
included), nothing is left half-written, and no scratch file survives the run -
not on an error, not on Ctrl-C, not on SIGTERM, not on a full disk.
"""
