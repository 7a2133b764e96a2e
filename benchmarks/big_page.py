"""Memory on one huge page: `crawler check` and `crawler crawl` of a page of many links.

    python3 benchmarks/big_page.py                    # 225,000 links (a 10 MB page)
    python3 benchmarks/big_page.py --links 1000000 --cases check-404
    python3 benchmarks/big_page.py --dense            # 623,333 links: the most in 10 MB

The page (under the default --max-bytes) links to ``--links`` distinct pages
of its site, and robots.txt names a sitemap that lists them all again. nginx
(one worker) serves it on 127.0.0.2; it is the only page crawled
(``--max-pages 1``), so what is measured is what one page of many links
costs. Cases:

- check-404: every link is missing (404): every result fails, and is reported;
- check-200: every link works (nginx answers each with one small page);
- crawl: the page and its sitemap, every link queued.

Printed for each: seconds, CPU seconds, peak RSS, URLs in checks.jsonl (or
queued, for the crawl). The target: every case under 250 MB. nginx is
stopped by its pid at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from bench import Run, count_lines, free_port, launch_nginx, measured

CASES = ("check-404", "check-200", "crawl")
# A dense page: just under the default --max-bytes (10 MiB), with room for its end.
DENSE_BYTES = 10 * 1024 * 1024 - 100


def generate(root: Path, links: int, site: str, dense: bool) -> int:
    """index.html of ``links`` links (``dense``: as many ``<a href=/N>`` as fit under the
    default --max-bytes), sitemap.xml of the same URLs, robots.txt naming it. Returns
    the number of links."""
    root.mkdir(parents=True)
    paths = [f"/p/{n}/pg{n}.html" for n in range(links)]
    with (root / "index.html").open("w") as page:
        page.write("<!doctype html><html><head><title>many links</title></head><body>\n")
        if dense:
            paths, size = [], 0
            while size + len(line := f"<a href=/{len(paths)}>\n") < DENSE_BYTES:
                paths.append(f"/{len(paths)}")
                size += len(line)
            page.writelines(f"<a href={path}>\n" for path in paths)
        else:
            page.writelines(f'<a href="{path}">{n}</a>\n' for n, path in enumerate(paths))
        page.write("</body></html>\n")
    with (root / "sitemap.xml").open("w") as sitemap:
        sitemap.write('<?xml version="1.0" encoding="UTF-8"?>\n')
        sitemap.write('<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n')
        sitemap.writelines(f"<url><loc>{site}{path}</loc></url>\n" for path in paths)
        sitemap.write("</urlset>\n")
    (root / "robots.txt").write_text(f"User-agent: *\nAllow: /\nSitemap: {site}/sitemap.xml\n")
    (root / "ok.html").write_text("<!doctype html><title>ok</title><p>ok</p>\n")
    return len(paths)


def run(case: str, seed: str, work: Path) -> Run:
    out = work / case
    command = [sys.executable, "-m", "crawler", "check" if case.startswith("check") else "crawl"]
    command += [seed, "--output", str(out), "--quiet", "--max-pages", "1", "--concurrency", "64"]
    if case.startswith("check"):
        return measured(case, command, work, lambda: count_lines(out / "checks.jsonl"))
    return measured(
        case, command, work, lambda: json.loads((out / "stats.json").read_text())["queued"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--links", type=int, default=225_000)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--dense", action="store_true", help="the most links 10 MB can hold")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crawler-big-page-") as folder:
        work = Path(folder)
        work.chmod(0o755)
        runs = []
        for case in args.cases:
            port = free_port()
            site = f"http://127.0.0.2:{port}"
            root = work / f"site-{case}"
            links = generate(root, args.links, site, args.dense)
            # check-200: every link answered with ok.html; else what is not there is a 404.
            found = "/ok.html" if case == "check-200" else "=404"
            server = (
                f"listen 127.0.0.2:{port}; root {root}; location / {{ try_files $uri {found}; }}"
            )
            nginx = launch_nginx(work, port, server)
            try:
                runs.append(run(case, f"{site}/index.html", work))
            finally:
                nginx.terminate()
                nginx.wait()
        size = (work / f"site-{args.cases[0]}" / "index.html").stat().st_size
        print(f"one page of {links:,} links ({size / 1e6:.1f} MB), --max-pages 1")
        print(f"{'case':<10} {'seconds':>8} {'CPU s':>7} {'peak RSS MB':>12} {'URLs':>9}")
        for one in runs:
            print(
                f"{one.name:<10} {one.seconds:>8.1f} {one.cpu_seconds:>7.1f}"
                f" {one.peak_rss_mb:>12.0f} {one.pages:>9,}"
            )


if __name__ == "__main__":
    main()
