"""The network: one aiohttp session and one request at a time (fetcher), the
addresses a crawl may connect to (addresses), and WARC.

Every network and protocol failure is caught here and becomes a short reason.
"""
