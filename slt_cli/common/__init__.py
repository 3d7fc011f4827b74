"""What every other package stands on: files on disk (``files``: bounded reads of what
users can hand us, atomic writes), optional extras (``extras``), the range of every
numeric setting (``ranges``) and the ``Reporter`` through which long work tells the world
what it is doing without printing (``reporting``); ``moved`` keeps 0.1's module paths
working for a release.

May import: ``slt_cli.errors`` alone. Every package may import this one.
"""
