"""Seeing the queue: listing and search, stats, the worker registry, event streams, metrics.

Everything here reads what the transition scripts write beside the records
(jobs/lua/includes/observe.lua), so it can never disagree with them, and reads it from
indexes, never by scanning every key.
"""
