"""Builds libLodestoneC.so with SwiftPM, the Swift runtime linked in, and
places it and its header beside the package (lodestone/_lib/).

`pip install ./Python` runs this from a clone of the repository (and
`pip install lodestone-*.tar.gz` from the sdist, which carries the Swift
package in swift/). It never
installs system packages by itself: it first checks what the C library's
build needs (a Swift 6.2+ toolchain, pkg-config, and the libraries the
library links: OpenBLAS, LZ4, zlib; not HDF5, which only the `lodestone`
command reads) and, if something is missing, stops with one message naming
the Debian packages and the apt-get command that installs them. With
LODESTONE_INSTALL_SYSTEM_PACKAGES=1 it runs that apt-get command itself
(through sudo when not root). Set LODESTONE_LIBRARY=/path/to/libLodestoneC.so
to package a library built elsewhere instead (no build).

Either way the library is checked before it is packaged (`check_library`):
a 64-bit shared object for this machine, no Swift toolchain library among
its dependencies, loading and answering the header's ABI version.

`missing_requirements()` and `check_build_requirements()` are the check,
importable without hatchling for the tests.
"""

import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import sysconfig
import tempfile
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
#: The from-source build's own SwiftPM folder, in the Swift package.
BUILD_FOLDER = ".build-dist"


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


#: ELF e_machine of each platform.machine() a wheel can be built for.
ELF_MACHINES = {"x86_64": 62, "amd64": 62, "aarch64": 183, "arm64": 183}
#: Shared libraries of the Swift toolchain: a wheel must not need them.
SWIFT_RUNTIME = re.compile(r"^lib(swift|Foundation|_Foundation|dispatch|BlocksRuntime)")


class LibraryProblem(RuntimeError):
    """A libLodestoneC.so that must not go into a wheel; str() says why."""


def elf_info(path: Path):
    """(e_machine, [DT_NEEDED names]) of a 64-bit little-endian ELF shared
    object, read from its section headers; raises LibraryProblem otherwise."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise LibraryProblem(f"{path} is not a 64-bit little-endian ELF file")
    e_type, machine = struct.unpack_from("<HH", data, 16)
    if e_type != 3:
        raise LibraryProblem(f"{path} is not a shared library (ELF type {e_type})")
    try:
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
        needed = []
        for _, kind, _, _, offset, size, link, _, _, _ in sections:
            if kind != 6:  # SHT_DYNAMIC
                continue
            strings = sections[link][4]
            for at in range(offset, offset + size, 16):
                tag, value = struct.unpack_from("<qQ", data, at)
                if tag == 0:
                    break
                if tag == 1:  # DT_NEEDED
                    end = data.index(b"\0", strings + value)
                    needed.append(data[strings + value:end].decode())
    except (struct.error, IndexError, ValueError, UnicodeDecodeError) as error:
        raise LibraryProblem(f"{path} is a damaged ELF file ({error})") from None
    return machine, needed


def check_library(library: Path, header: Path, machine: str = None) -> None:
    """Refuses, at build time, a library a wheel must not carry: missing, not
    a shared library for this machine, needing the Swift toolchain's runtime,
    or not loading and answering the header's ABI version."""
    machine = machine or platform.machine()
    if not library.is_file():
        raise LibraryProblem(f"{library} does not exist: nothing to package")
    found, needed = elf_info(library)
    if found != ELF_MACHINES.get(machine.lower()):
        raise LibraryProblem(f"{library} is built for ELF machine {found}, not for this {machine} machine")
    runtime = [name for name in needed if SWIFT_RUNTIME.match(name)]
    if runtime:
        raise LibraryProblem(f"{library} loads the Swift runtime from the toolchain ({', '.join(runtime)}); "
                             "build it with the runtime linked in: swift build -c release --product LodestoneC "
                             "-Xswiftc -static-stdlib (as Scripts/build-dist does)")
    expected = re.search(r"#define LDS_ABI_VERSION (\d+)", header.read_text())
    probe = ("import ctypes, sys; lib = ctypes.CDLL(sys.argv[1]); "
             "lib.lds_abi_version.restype = ctypes.c_uint32; print(lib.lds_abi_version())")
    run = subprocess.run([sys.executable, "-c", probe, str(library)], capture_output=True, text=True,
                         env=dict(os.environ, SWIFT_BACKTRACE="enable=no"))
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no message"])[-1]
        raise LibraryProblem(f"{library} does not load here: {last}")
    if run.stdout.strip() != expected.group(1):
        raise LibraryProblem(f"{library} implements C ABI {run.stdout.strip()}, "
                             f"its header ({header}) says {expected.group(1)}")


def swift_package(root: Path):
    """The Swift package to build from: the repository around Python/, or
    the copy an sdist carries in swift/; None if neither is there."""
    for candidate in (root.parent, root / "swift"):
        if (candidate / "Package.swift").exists() and (candidate / "Sources" / "LodestoneCAPI").is_dir():
            return candidate
    return None


def _stripped(library: Path, folder: Path) -> Path:
    """A copy of `library` without its symbol tables (half the size), if
    `strip` is here; else the library itself."""
    strip = shutil.which("strip")
    if strip is None:
        return library
    copy = folder / library.name
    subprocess.run([strip, "--strip-unneeded", "-o", str(copy), str(library)], check=True)
    return copy


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version, build_data):
        if self.target_name != "wheel":
            return
        root = Path(self.root).resolve()
        package = swift_package(root)
        prebuilt = os.environ.get("LODESTONE_LIBRARY")
        header = (package or root.parent) / "Sources" / "LodestoneCAPI" / "lodestone.h"
        if prebuilt:
            library = Path(prebuilt).resolve()
        else:
            if package is None:
                raise RuntimeError(
                    "lodestone: building from source needs the Swift package (the repository around Python/, "
                    "or the swift/ folder of an sdist); or set LODESTONE_LIBRARY to a built libLodestoneC.so")
            try:
                swift = check_build_requirements(display=self.app.display_info)
            except MissingRequirements as missing:
                # The message alone (pip shows the build's output), not a traceback.
                print(missing, file=sys.stderr, flush=True)
                raise SystemExit(1) from None
            self.app.display_info("lodestone: building libLodestoneC.so (swift build -c release) ...")
            # The Swift runtime linked in, so the wheel needs no toolchain; its
            # own build folder, so the repository's .build keeps its flags.
            subprocess.run([swift, "build", "-c", "release", "--product", "LodestoneC", "-Xswiftc",
                            "-static-stdlib", "--scratch-path", str(package / BUILD_FOLDER)],
                           cwd=package, check=True)
            library = package / BUILD_FOLDER / "release" / "libLodestoneC.so"
        if not header.exists():
            raise RuntimeError(f"lodestone: {header} not found")
        try:
            check_library(library, header)
        except LibraryProblem as problem:
            print(f"lodestone: cannot package the library: {problem}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None
        staging = self._staging = Path(tempfile.mkdtemp(prefix="lodestone-wheel-"))
        include = build_data.setdefault("force_include", {})
        include[str(_stripped(library, staging))] = "lodestone/_lib/libLodestoneC.so"
        include[str(header)] = "lodestone/_lib/lodestone.h"
        build_data["pure_python"] = False
        # Honest for the machine that built it; Scripts/build-dist then has
        # auditwheel turn it into a manylinux tag.
        tag = sysconfig.get_platform().replace("-", "_").replace(".", "_")
        build_data["tag"] = f"py3-none-{tag}"

    def finalize(self, version, build_data, artifact_path):
        staging = getattr(self, "_staging", None)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
