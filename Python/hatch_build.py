"""Builds libLodestoneC.so with SwiftPM and places it, its header and the
Swift runtime libraries it links beside the package (lodestone/_lib/).

`pip install ./Python` runs this from a clone of the repository. It runs
the repository's Scripts/setup.sh first, which installs the system
libraries Lodestone links (OpenBLAS, LZ4, zlib) with apt-get when they are
missing. Set LODESTONE_LIBRARY=/path/to/libLodestoneC.so to package a
library built elsewhere instead.
"""

import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


def _runtime_libraries(library: Path) -> list:
    """The Swift runtime libraries `library` loads from the toolchain."""
    out = subprocess.run(["ldd", str(library)], check=True, capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        parts = line.split("=>")
        if len(parts) != 2:
            continue
        path = parts[1].strip().split(" (")[0].strip()
        if "/lib/swift/" in path and os.path.exists(path):
            found.append(Path(path))
    return found


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version, build_data):
        if self.target_name != "wheel":
            return
        repo = Path(self.root).resolve().parent
        header = repo / "Sources" / "LodestoneCAPI" / "lodestone.h"
        prebuilt = os.environ.get("LODESTONE_LIBRARY")
        if prebuilt:
            library = Path(prebuilt).resolve()
        else:
            if not (repo / "Package.swift").exists():
                raise RuntimeError(
                    "lodestone: building from source needs the whole repository (Package.swift beside Python/); "
                    "or set LODESTONE_LIBRARY to a built libLodestoneC.so")
            script = 'source Scripts/setup.sh && swift build -c release --product LodestoneC'
            self.app.display_info("lodestone: building libLodestoneC.so (swift build -c release) ...")
            subprocess.run(["bash", "-c", script], cwd=repo, check=True)
            library = repo / ".build" / "release" / "libLodestoneC.so"
        if not library.exists():
            raise RuntimeError(f"lodestone: {library} was not built")
        include = build_data.setdefault("force_include", {})
        include[str(library)] = "lodestone/_lib/libLodestoneC.so"
        include[str(header)] = "lodestone/_lib/lodestone.h"
        for runtime in _runtime_libraries(library):
            include[str(runtime)] = f"lodestone/_lib/{runtime.name}"
        build_data["pure_python"] = False
        platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
        build_data["tag"] = f"py3-none-{platform}"
