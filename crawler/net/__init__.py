"""The network: one aiohttp session and one request at a time (fetcher), and WARC.

Every network and protocol failure is caught here and becomes a short reason.
"""
