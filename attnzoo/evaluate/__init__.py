"""Evaluation: accuracy and cost of a model, throughput, and the leaderboard of runs.

MAC counting lives in :mod:`attnzoo.flops` (the Hub's model cards count too); it is re-exported here.
"""

from attnzoo.flops import MAC_CONVENTION, MacCount, count_macs

__all__ = ["MAC_CONVENTION", "MacCount", "count_macs"]
