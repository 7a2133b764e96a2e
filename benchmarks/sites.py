"""The benchmark's generated sites: realistic pages (the default) or flat ones.

realistic: pages in sections (``/docs/s<k>/p<n>.html``, 100 a section), each
with a navigation block repeated on every page (root-relative links), links
inside paragraphs written as real sites write them (``p12.html``,
``../s3/p345.html``, ``/docs/s7/p789.html``, each with a fragment now and
then), headings with ids and in-page ``#s1`` links, and a few offsite links
(never followed: out of scope). About ``links`` same-site links a page.

flat: what the benchmark measured first: every link an absolute URL in one
list. Page i links to page i+1 in both, so every page is reachable.
"""

from __future__ import annotations

import random
from pathlib import Path

WORDS = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing"]
WORDS += ["elit", "sed", "do", "eiusmod", "tempor"]
SECTION = 100


def host_of(page: int, hosts: int) -> str:
    return f"127.0.0.{2 + page % hosts}"


def page_path(number: int, site: str) -> str:
    if site == "flat":
        return f"/p/{number}.html"
    return f"/docs/s{number // SECTION}/p{number}.html"


def generate(
    root: Path, site: str, pages: int, kb: tuple[int, int], links: int, hosts: int, port: int
) -> list[str]:
    """Write the site under ``root``; return every page's URL (for the ceiling)."""
    chooser = random.Random(20261126)
    urls = []
    for number in range(pages):
        targets = [(number + 1) % pages] + [chooser.randrange(pages) for _ in range(links - 1)]
        size = chooser.randint(kb[0], kb[1]) * 1024
        if site == "flat":
            html = _flat_page(number, targets, size, chooser, hosts, port)
        else:
            html = _realistic_page(number, targets, size, chooser, hosts, port)
        path = root / page_path(number, site).lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html)
        urls.append(f"http://{host_of(number, hosts)}:{port}{page_path(number, site)}")
    return urls


def _words(chooser: random.Random, count: int) -> str:
    return " ".join(chooser.choices(WORDS, k=max(count, 1)))


def _flat_page(
    number: int, targets: list[int], size: int, chooser: random.Random, hosts: int, port: int
) -> str:
    anchors = "".join(
        f'<li><a href="http://{host_of(t, hosts)}:{port}{page_path(t, "flat")}">page {t}</a></li>'
        for t in targets
    )
    words = _words(chooser, size // 6)[:size]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Page {number}</title>"
        f"</head><body><h1>Page {number}</h1><ul>{anchors}</ul><p>{words}</p></body></html>"
    )


def _href(source: int, target: int, chooser: random.Random, hosts: int, port: int) -> str:
    """How a page links to another: relative, root-relative or absolute, as sites do."""
    if host_of(source, hosts) != host_of(target, hosts):
        return f"http://{host_of(target, hosts)}:{port}{page_path(target, 'realistic')}"
    same_section = source // SECTION == target // SECTION
    style = chooser.random()
    if same_section and style < 0.5:
        href = f"p{target}.html"
    elif style < 0.8:
        href = f"../s{target // SECTION}/p{target}.html"
    else:
        href = page_path(target, "realistic")
    if chooser.random() < 0.15:
        href += f"#s{chooser.randrange(1, 4)}"
    return href


def _realistic_page(
    number: int, targets: list[int], size: int, chooser: random.Random, hosts: int, port: int
) -> str:
    nav = (
        '<nav><ul><li><a href="/docs/s0/p0.html">Home</a></li>'
        '<li><a href="/docs/s0/p1.html">Guide</a></li><li><a href="/docs/s0/p2.html">API</a></li>'
        '<li><a href="/docs/s0/p3.html">FAQ</a></li><li><a href="#main">Skip</a></li></ul></nav>'
    )
    body_links = targets[: len(targets) - 5] or targets
    per_paragraph = max(len(body_links) // 3, 1)
    paragraphs = []
    room = max(size - 1500, 600)
    for index in range(0, len(body_links), per_paragraph):
        anchors = " ".join(
            f'{_words(chooser, 12)} <a href="{_href(number, t, chooser, hosts, port)}">'
            f"{_words(chooser, 3)}</a>"
            for t in body_links[index : index + per_paragraph]
        )
        filler = _words(chooser, room // 6 // 4)
        paragraphs.append(
            f'<h2 id="s{len(paragraphs) + 1}">Section {len(paragraphs) + 1}</h2>'
            f"<p>{anchors} {filler}</p>"
        )
    offsite = (
        f'<p>See <a href="https://offsite.example/ref/{number % 50}">the reference</a> and '
        f'<a href="https://cdn.offsite.example/lib.js">the library</a>.</p>'
    )
    toc = "".join(f'<li><a href="#s{k}">Section {k}</a></li>' for k in range(1, 4))
    footer_links = targets[len(body_links) :]
    footer = "".join(
        f'<li><a href="{_href(number, t, chooser, hosts, port)}">More {t}</a></li>'
        for t in footer_links
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Page {number}</title>"
        f"<link rel='stylesheet' href='/style.css'></head><body>{nav}"
        f'<main id="main"><h1>Page {number}</h1><ul class="toc">{toc}</ul>'
        f"{''.join(paragraphs)}{offsite}</main><footer><ul>{footer}</ul></footer></body></html>"
    )
