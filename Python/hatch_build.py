"""Builds libLodestoneC.so with SwiftPM and places it, its header and the
Swift runtime libraries it links beside the package (lodestone/_lib/).

`pip install ./Python` runs this from a clone of the repository. It never
installs system packages by itself: it first checks what the C library's
build needs (a Swift 6.2+ toolchain, pkg-config, and the libraries the
library links: OpenBLAS, LZ4, zlib; not HDF5, which only the `lodestone`
command links) and, if something is missing, stops with one message naming
the Debian packages and the apt-get command that installs them. With
LODESTONE_INSTALL_SYSTEM_PACKAGES=1 it runs that apt-get command itself
(through sudo when not root). Set LODESTONE_LIBRARY=/path/to/libLodestoneC.so
to package a library built elsewhere instead (no check, no build).

`missing_requirements()` and `check_build_requirements()` are the check,
importable without hatchling for the tests.
"""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # imported by the tests for the check alone
    BuildHookInterface = object

#: The pkg-config modules the C library links, and the Debian package of each.
LIBRARIES = {"openblas": "libopenblas-dev", "liblz4": "liblz4-dev", "zlib": "zlib1g-dev"}
#: The environment variable that lets the build install missing packages.
OPT_IN = "LODESTONE_INSTALL_SYSTEM_PACKAGES"
#: Where Scripts/setup.sh also looks for a toolchain not on PATH.
FALLBACK_SWIFT = "/opt/swift/usr/bin/swift"
SWIFT_MINIMUM = (6, 2)


class MissingRequirements(RuntimeError):
    """What the build needs and does not find; str() is the message to show."""


def _swift(env) -> str:
    """The swift executable the build will use, or None."""
    found = shutil.which("swift", path=env.get("PATH", os.defpath))
    if found:
        return found
    return FALLBACK_SWIFT if os.access(FALLBACK_SWIFT, os.X_OK) else None


def _swift_problem(swift, env):
    """Why `swift` cannot build Lodestone (None if it can)."""
    if swift is None:
        return "no Swift toolchain on PATH (nor in /opt/swift/usr/bin)"
    try:
        out = subprocess.run([swift, "--version"], capture_output=True, text=True, env=env, timeout=120)
    except (OSError, subprocess.SubprocessError) as error:
        return f"{swift} --version failed: {error}"
    match = re.search(r"Swift version (\d+)\.(\d+)", out.stdout + out.stderr)
    if out.returncode != 0 or not match:
        return f"{swift} --version did not report a Swift version"
    if tuple(int(x) for x in match.groups()) < SWIFT_MINIMUM:
        return f"{swift} is Swift {match.group(1)}.{match.group(2)}; Lodestone needs Swift 6.2 or later"
    return None


def missing_requirements(env=None):
    """(Debian packages missing, a problem with the Swift toolchain or None).

    The libraries are checked with `pkg-config --exists`, as SwiftPM finds
    them; without pkg-config they cannot be checked, and all are listed
    (apt-get skips those already installed)."""
    env = dict(os.environ if env is None else env)
    path = env.get("PATH", os.defpath)
    missing = []
    pkg_config = shutil.which("pkg-config", path=path)
    if pkg_config is None:
        missing = ["pkg-config"] + list(LIBRARIES.values())
    else:
        for module, package in LIBRARIES.items():
            if subprocess.run([pkg_config, "--exists", module], env=env).returncode != 0:
                missing.append(package)
    return missing, _swift_problem(_swift(env), env)


def install_command(packages, root=None) -> str:
    """The apt-get command line that installs `packages`."""
    root = os.geteuid() == 0 if root is None else root
    sudo = "" if root else "sudo "
    return f"{sudo}apt-get update && {sudo}apt-get install -y {' '.join(packages)}"


def _message(packages, swift_problem) -> str:
    lines = ["lodestone: cannot build libLodestoneC.so from source:"]
    if packages:
        lines += [f"  missing Debian packages: {', '.join(packages)}",
                  f"  install them with:  {install_command(packages)}",
                  f"  (or set {OPT_IN}=1 to let `pip install` run that command)"]
    if swift_problem:
        lines += [f"  {swift_problem}:",
                  "  install Swift 6.2 or later from https://www.swift.org/install/linux/ (not an apt package)"]
    lines.append("  Or set LODESTONE_LIBRARY=/path/to/libLodestoneC.so to package a library built elsewhere.")
    return "\n".join(lines)


def _apt_install(packages, env, display):
    """Runs install_command(packages); the caller has the user's opt-in."""
    path = env.get("PATH", os.defpath)
    root = os.geteuid() == 0
    apt_get, sudo = shutil.which("apt-get", path=path), shutil.which("sudo", path=path)
    if apt_get is None:
        raise MissingRequirements(_message(packages, None) + "\n  (no apt-get here: install them with your system's "
                                                             "package manager)")
    if not root and sudo is None:
        raise MissingRequirements(_message(packages, None) + "\n  (not root and no sudo: cannot install)")
    prefix = [] if root else [sudo]
    display(f"lodestone: {OPT_IN}=1: running {install_command(packages, root)}")
    apt_env = dict(env, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(prefix + [apt_get, "update", "-qq"], env=apt_env, check=True)
    subprocess.run(prefix + [apt_get, "install", "-y", "-qq"] + list(packages), env=apt_env, check=True)


def check_build_requirements(env=None, display=print) -> str:
    """Checks what building from source needs; returns the swift to use.

    Raises MissingRequirements naming what is missing, unless `env` has
    LODESTONE_INSTALL_SYSTEM_PACKAGES=1, in which case the missing Debian
    packages are installed with apt-get and checked again. Runs apt-get in
    no other case."""
    env = dict(os.environ if env is None else env)
    packages, swift_problem = missing_requirements(env)
    if packages and not swift_problem and env.get(OPT_IN) == "1":
        _apt_install(packages, env, display)
        packages, swift_problem = missing_requirements(env)
        if packages:
            raise MissingRequirements(_message(packages, None) + "\n  (still missing after apt-get install)")
    if packages or swift_problem:
        raise MissingRequirements(_message(packages, swift_problem))
    return _swift(env)


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
            try:
                swift = check_build_requirements(display=self.app.display_info)
            except MissingRequirements as missing:
                # The message alone (pip shows the build's output), not a traceback.
                print(missing, file=sys.stderr, flush=True)
                raise SystemExit(1) from None
            self.app.display_info("lodestone: building libLodestoneC.so (swift build -c release) ...")
            subprocess.run([swift, "build", "-c", "release", "--product", "LodestoneC"], cwd=repo, check=True)
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
