"""CrawlConfig validation and config.toml loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crawler.config import CrawlConfig, build_config, load_toml
from crawler.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_repository_config_toml_lists_every_setting_with_its_default() -> None:
    settings = load_toml(REPO / "config.toml")
    assert build_config(settings) == CrawlConfig(output_dir=Path("output"))
    text = (REPO / "config.toml").read_text()
    from crawler.config import CONFIG_KEYS

    for key in CONFIG_KEYS:
        assert f"{key} =" in text, f"config.toml does not document {key}"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_pages": 0}, "max_pages must be greater than 0"),
        ({"concurrency": -1}, "concurrency must be greater than 0"),
        ({"delay": -0.5}, "delay must not be negative"),
        ({"timeout": float("inf")}, "timeout must be a finite number, not inf"),
        ({"delay": float("nan")}, "delay must be a finite number, not nan"),
        ({"max_pages": True}, "max_pages must be a whole number"),
        ({"timeout": "fast"}, "timeout must be a number"),
        ({"seeds": ("ftp://a.org/",)}, r"not an http\(s\) URL"),
        ({"seeds": ("localhost:8080/",)}, r"did you mean http://localhost:8080/\?"),
        ({"seeds": ("mailto:a@b.org",)}, r"not an http\(s\) URL: 'mailto:a@b.org'$"),
        ({"format": "xml"}, "format must be one of"),
        ({"allow_domain": "a.org"}, "allow_domain must be a list"),
        # A slip of the finger that would spawn 10,000 processes, each with its memory.
        ({"processes": 10_000}, r"processes must be at most \d+ \(4 for each of the \d+ CPUs"),
        # Sent as headers: a line break or NUL would fail every request, as "connection".
        ({"user_agent": "bot\r\nX-Evil: 1"}, "user_agent is sent as a header: one line"),
        ({"user_agent": "bot\x00"}, "user_agent is sent as a header"),
        ({"header": ("X-A: a\x01b",)}, "header 'X-A' cannot be set"),
    ],
)
def test_bad_values_are_config_errors(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CrawlConfig(**values)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[crawl]\nmax_pages = ", "not valid TOML"),
        ("[crawl]\nmax_pagez = 3\n", "unknown setting"),
        ("[other]\n", "unknown table"),
    ],
)
def test_bad_files_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_toml(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_toml(tmp_path / "nope.toml")


def test_file_values_build_a_config() -> None:
    config = build_config(
        {"seeds": ["http://a.org/"], "output": "out", "quiet": True, "max_pages": 5}
    )
    assert config.seeds == ("http://a.org/",)
    assert config.output_dir == Path("out")
    assert config.max_pages == 5


def test_every_flag_is_documented_and_every_documented_flag_exists() -> None:
    import re

    from crawler.flags import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    flags = {
        option
        for command in ("crawl", "check")
        for action in commands[command]._actions
        for option in action.option_strings
    } - {"-h", "--help"}
    readme = (REPO / "README.md").read_text()
    first_cells = [line.split("|")[1] for line in readme.splitlines() if line.startswith("| `-")]
    documented = {flag for cell in first_cells for flag in re.findall(r"`(--?[a-z-]+)", cell)}
    assert flags - {"--config"} == documented
    flags = {flag for flag in flags if flag.startswith("--")}
    settings = (REPO / "config.toml").read_text()
    for flag in flags - {"--config"}:
        assert f"{flag[2:].replace('-', '_')} =" in settings, f"config.toml lacks {flag}"


@pytest.mark.parametrize("name", ["crawler.toml", "config.toml"])
async def test_a_config_file_others_can_write_or_own_is_not_read(tmp_path: Path, name: str) -> None:
    """As git refuses a repository another user owns: a found config file can name an
    extractor, code that would run as you. Named with --config, it is read."""
    import os

    from test_cli import assert_one_line_error, run_cli

    config = tmp_path / name
    config.write_text('[crawl]\nseeds = ["http://127.0.0.1:9/"]\nmax_pages = 0\n')
    for change in ("mode", "owner"):
        if change == "mode":
            config.chmod(0o666)
        elif os.geteuid() == 0:
            config.chmod(0o644)
            os.chown(config, 65534, 65534)  # nobody
        else:
            continue
        result = await run_cli("crawl", "-o", "out", cwd=tmp_path)
        assert_one_line_error(result, 2, "so it was not read (it could run code as you)")
        assert result[2].rstrip().endswith(f"if you trust it, name it: --config {config}")
        assert not (tmp_path / "out").exists()
        # Named: read (its max_pages = 0 is then the error it meets).
        result = await run_cli("crawl", "-o", "out", "--config", name, cwd=tmp_path)
        assert_one_line_error(result, 2, "max_pages")
