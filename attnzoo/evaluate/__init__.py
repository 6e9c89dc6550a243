"""Evaluation: MAC counting, accuracy and cost of a model, throughput, and the leaderboard of runs."""

from attnzoo.evaluate.flops import MAC_CONVENTION, MacCount, count_macs

__all__ = ["MAC_CONVENTION", "MacCount", "count_macs"]
