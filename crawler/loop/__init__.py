"""The crawl loop of one process and what it does with each URL.

The engine (the loop only), the run modes that open and close it (runs.py,
shared_run.py), the visit of one lease (visit.py), what is known of each host
(hosts.py), the link gate (gate.py), the parse stage (parsing.py) and the
records (recording.py).
"""
