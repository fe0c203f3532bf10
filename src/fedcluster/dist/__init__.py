"""Everything multi-process: process groups (group.py), the torchrun launch (launch.py),
collectives with failure diagnosis (collectives.py) and the distributed engine with its
aggregator over ranks (engine.py). Nothing here is imported by a one-process run."""
