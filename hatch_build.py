"""Build the wheel's ``ec2_metadata`` package from the one source file.

mypy trusts the types of an installed distribution only when it is a package with a
``py.typed`` marker (PEP 561 has no marker for a single module).  So the wheel holds
``ec2_metadata/__init__.py`` (a copy of ``ec2_metadata.py``), an empty ``py.typed`` and a
``__main__.py`` for ``python -m ec2_metadata``; the repository keeps the single file that
users copy.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

MAIN = "from ec2_metadata import main\n\nraise SystemExit(main())\n"


class PackageTheModule(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        self._generated = Path(tempfile.mkdtemp(prefix="ec2-metadata-build-"))
        (self._generated / "__main__.py").write_text(MAIN)
        (self._generated / "py.typed").write_text("")
        build_data["force_include"].update(
            {
                str(Path(self.root) / "ec2_metadata.py"): "ec2_metadata/__init__.py",
                str(self._generated / "__main__.py"): "ec2_metadata/__main__.py",
                str(self._generated / "py.typed"): "ec2_metadata/py.typed",
            }
        )

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if self.target_name == "wheel":
            shutil.rmtree(self._generated, ignore_errors=True)
