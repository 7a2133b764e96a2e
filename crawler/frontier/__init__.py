"""Frontiers: what is queued, what was seen, and when each host may be asked next.

The protocol (protocol.py) and its two implementations, in memory (memory.py,
journaled to state.sqlite) and in Redis (shared.py, with its codec, link,
group commit and Lua scripts); the per-host politeness slots (politeness.py)
that both keep by one rule.
"""
