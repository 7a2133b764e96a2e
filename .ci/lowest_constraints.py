"""Print a pip constraints file pinning every dependency to its floor in pyproject.toml.

.ci/run installs the package with these in a second environment and runs the
tests there: every version floor in pyproject.toml is a tested promise.
"""

import re
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
for requirement in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
    floor = re.fullmatch(
        r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?>=([0-9][^,;\s]*)(\s*;.*)?", requirement.strip()
    )
    if floor is not None:
        print(f"{floor.group(1)}=={floor.group(3)}")
