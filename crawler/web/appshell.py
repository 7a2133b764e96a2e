"""Whether a page is an app shell: HTML that only its scripts fill in (--render auto).

Pure: bytes in, a reason out. Evidence, in the order it is looked for:
"empty-mount" (an empty element an app mounts in: #root, #app, #__next, #__nuxt,
<app-root>), "noscript" (a <noscript> asking for JavaScript), "only-scripts"
(scripts and almost no text). A page with ``FREE_LINKS`` links or more is read
again only if a mount point's id is in it: ordinary sites cost a regex.
"""

from __future__ import annotations

import re

import lxml.etree
import lxml.html

# A page with this many followed links is rendered only on evidence of a mount point.
FREE_LINKS = 5
# Fewer words than this, with scripts, is a page of scripts only.
FEW_WORDS = 20
_MOUNT_IDS = ("root", "app", "__next", "__nuxt", "svelte")
# A mount point's id (ids are case-sensitive): the one sign looked for in a page with
# links. One regex with a literal start: with re.IGNORECASE and <noscript and
# <app-root in one pattern it took 208 us of a 10 KB page, a quarter of a crawl's
# CPU; this takes 12 us.
_MOUNT_ID = re.compile(rb"""id\s*=\s*["']?(?:root|app|__next|__nuxt|svelte)["'\s>]""")
_ASKS_FOR_SCRIPT = re.compile(r"javascript|enable js|\bjs\b", re.IGNORECASE)
_NOT_TEXT = ("script", "style", "noscript", "template")


def app_shell(body: bytes, links: int) -> str | None:
    """Why ``body`` (an HTML page whose parse found ``links`` links) needs its scripts
    run, or None."""
    if links >= FREE_LINKS and _MOUNT_ID.search(body) is None:
        return None
    try:
        document = lxml.html.document_fromstring(body)
    except (lxml.etree.ParserError, ValueError):
        return None
    for mount in _mounts(document):
        if len(mount) == 0 and not (mount.text or "").strip():
            return "empty-mount"
    for element in document.iter("noscript"):
        if _ASKS_FOR_SCRIPT.search(element.text_content()):
            return "noscript"
    if links < FREE_LINKS and next(document.iter("script"), None) is not None:
        lxml.etree.strip_elements(document, *_NOT_TEXT, with_tail=False)
        if len(document.text_content().split()) < FEW_WORDS:
            return "only-scripts"
    return None


def _mounts(document: lxml.html.HtmlElement) -> list[lxml.html.HtmlElement]:
    found = [element for element in document.iter("app-root")]
    for name in _MOUNT_IDS:
        element = document.get_element_by_id(name, None)
        if element is not None:
            found.append(element)
    return found
