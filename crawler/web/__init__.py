"""Pure web knowledge: URLs, robots.txt, HTML, sitemaps, the seen set.

Plain functions and small values, no I/O and nothing of the rest of crawler:
tested with no loop and no server.
"""
