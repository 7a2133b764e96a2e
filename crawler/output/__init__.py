"""The durable side of a crawl: its output folder and its state.

The files (files.py) and the one place records become text (lines.py), the
link index behind broken.jsonl (links.py), state.sqlite (state.py), the
journal that writes both in the right order (journal.py; shared_journal.py
for a member of a shared crawl), and report.html (report.py).
"""
