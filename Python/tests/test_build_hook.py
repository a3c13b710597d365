"""The from-source build hook (Python/hatch_build.py) never installs system
packages by itself: with something missing it stops with one message that
names the Debian packages and the apt-get command, and runs apt-get only
when LODESTONE_INSTALL_SYSTEM_PACKAGES=1.

The machine's own tools are replaced by fakes on PATH: a `pkg-config` that
knows only the libraries marked present in a folder, a `swift` that reports a
version, and an `apt-get` and a `sudo` that record every call (the fake
apt-get marks the libraries of the packages it "installs" as present).
"""

import importlib.util
import os
import stat
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {"openblas": "libopenblas-dev", "liblz4": "liblz4-dev", "zlib": "zlib1g-dev", "hdf5": "libhdf5-dev"}


def load_hook():
    """hatch_build.py as a module (importable without hatchling)."""
    spec = importlib.util.spec_from_file_location("lodestone_hatch_build", REPO / "Python" / "hatch_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _script(path: Path, text: str):
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


class FakeSystem:
    def __init__(self, root: Path, present=("openblas", "liblz4", "zlib", "hdf5"), pkg_config=True,
                 swift="6.3.1"):
        self.bin, self.state = root / "bin", root / "state"
        self.bin.mkdir()
        self.state.mkdir()
        self.calls = root / "calls.log"
        for module in present:
            (self.state / module).touch()
        if pkg_config:
            _script(self.bin / "pkg-config",
                    f'for m in "$@"; do case "$m" in --*) ;; *) [ -e "{self.state}/$m" ] || exit 1 ;; esac; done\n')
        if swift:
            _script(self.bin / "swift", f'echo "Swift version {swift} (swift-{swift}-RELEASE)"\n')
        marks = "".join(f'        {package}) : > "{self.state}/{module}" ;;\n'
                        for module, package in PACKAGES.items())
        _script(self.bin / "apt-get",
                f'echo "apt-get $*" >> "{self.calls}"\n'
                f'[ "$1" = install ] || exit 0\n'
                f'for p in "$@"; do\n    case "$p" in\n{marks}    esac\ndone\n')
        _script(self.bin / "sudo", f'echo "sudo $*" >> "{self.calls}"\nexec "$@"\n')

    def env(self, **extra):
        return {"PATH": str(self.bin), **extra}

    def recorded(self):
        return self.calls.read_text().splitlines() if self.calls.exists() else []


@pytest.fixture
def hook(monkeypatch):
    module = load_hook()
    # The fallback toolchain (/opt/swift) must not be found behind the fakes' back.
    monkeypatch.setattr(module, "FALLBACK_SWIFT", "/nonexistent/swift")
    return module


def test_a_missing_library_is_named_with_its_debian_package_and_apt_get_is_not_run(hook, tmp_path):
    fake = FakeSystem(tmp_path, present=("openblas", "zlib", "hdf5"))
    assert hook.missing_requirements(fake.env()) == (["liblz4-dev"], None)
    with pytest.raises(hook.MissingRequirements) as error:
        hook.check_build_requirements(fake.env(), display=lambda _: None)
    message = str(error.value)
    assert "missing Debian packages: liblz4-dev" in message
    assert "apt-get install -y liblz4-dev" in message
    assert "LODESTONE_INSTALL_SYSTEM_PACKAGES=1" in message
    assert fake.recorded() == [], "apt-get (or sudo) ran without the opt-in"


def test_the_message_gives_the_sudo_command_to_a_user_who_is_not_root(hook):
    assert hook.install_command(["liblz4-dev", "zlib1g-dev"], root=False) == \
        "sudo apt-get update && sudo apt-get install -y liblz4-dev zlib1g-dev"
    assert hook.install_command(["liblz4-dev"], root=True) == "apt-get update && apt-get install -y liblz4-dev"


def test_hdf5_is_not_required(hook, tmp_path):
    """Only the lodestone command links HDF5; the C library does not."""
    fake = FakeSystem(tmp_path, present=("openblas", "liblz4", "zlib"))
    assert hook.check_build_requirements(fake.env(), display=lambda _: None) == str(fake.bin / "swift")
    assert fake.recorded() == []


def test_without_pkg_config_the_libraries_cannot_be_checked_and_all_are_named(hook, tmp_path):
    fake = FakeSystem(tmp_path, pkg_config=False)
    with pytest.raises(hook.MissingRequirements) as error:
        hook.check_build_requirements(fake.env(), display=lambda _: None)
    assert "pkg-config, libopenblas-dev, liblz4-dev, zlib1g-dev" in str(error.value)
    assert "libhdf5-dev" not in str(error.value)
    assert fake.recorded() == []


@pytest.mark.parametrize("swift, expected", [(None, "no Swift toolchain"), ("5.10", "Swift 6.2 or later")])
def test_a_missing_or_old_swift_is_named(hook, tmp_path, swift, expected):
    fake = FakeSystem(tmp_path, present=("openblas", "zlib"), swift=swift)
    with pytest.raises(hook.MissingRequirements) as error:
        hook.check_build_requirements(fake.env(LODESTONE_INSTALL_SYSTEM_PACKAGES="1"), display=lambda _: None)
    assert expected in str(error.value) and "swift.org" in str(error.value)
    assert "liblz4-dev" in str(error.value)
    # No toolchain means no build, so nothing is installed even with the opt-in.
    assert fake.recorded() == []


def test_the_opt_in_installs_only_what_is_missing(hook, tmp_path):
    fake = FakeSystem(tmp_path, present=("openblas", "hdf5"))
    shown = []
    swift = hook.check_build_requirements(fake.env(LODESTONE_INSTALL_SYSTEM_PACKAGES="1"), display=shown.append)
    assert swift == str(fake.bin / "swift")
    calls = fake.recorded()
    assert [c for c in calls if c.startswith("apt-get ")] == \
        ["apt-get update -qq", "apt-get install -y -qq liblz4-dev zlib1g-dev"], calls
    # Through sudo exactly when not root.
    assert len([c for c in calls if c.startswith("sudo ")]) == (0 if os.geteuid() == 0 else 2), calls
    assert any("apt-get install -y liblz4-dev zlib1g-dev" in line for line in shown)


def test_the_opt_in_must_be_exactly_1(hook, tmp_path):
    fake = FakeSystem(tmp_path, present=("openblas", "zlib"))
    for value in ("", "0", "yes"):
        with pytest.raises(hook.MissingRequirements):
            hook.check_build_requirements(fake.env(LODESTONE_INSTALL_SYSTEM_PACKAGES=value), display=lambda _: None)
    assert fake.recorded() == []


def test_the_hook_stops_with_the_message_and_no_traceback(hook, tmp_path, monkeypatch, capsys):
    """CustomBuildHook.initialize, as pip's build runs it, on a machine
    missing liblz4: exit status 1, the message on stderr, no apt-get."""
    fake = FakeSystem(tmp_path, present=("openblas", "zlib"))
    monkeypatch.setenv("PATH", str(fake.bin))
    monkeypatch.delenv("LODESTONE_LIBRARY", raising=False)
    monkeypatch.delenv("LODESTONE_INSTALL_SYSTEM_PACKAGES", raising=False)
    shown = []

    class Hook(hook.CustomBuildHook):
        # What hatchling's BuildHookInterface provides (as properties there).
        target_name = "wheel"
        root = str(REPO / "Python")
        app = types.SimpleNamespace(display_info=shown.append)

    instance = object.__new__(Hook)
    with pytest.raises(SystemExit) as stopped:
        instance.initialize("standard", {})
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert "missing Debian packages: liblz4-dev" in err and "Traceback" not in err
    assert not any("building libLodestoneC.so" in line for line in shown)
    assert fake.recorded() == []


# The library check (check_library): what a wheel must not carry is refused
# when the wheel is built, not when a user imports it.

HEADER = REPO / "Sources" / "LodestoneCAPI" / "lodestone.h"


@pytest.fixture(scope="module")
def built_library():
    """The library this test run loads (installed or from the repository)."""
    import lodestone
    return Path(lodestone.library_info()["path"])


def test_a_built_library_passes(hook, built_library):
    hook.check_library(built_library, HEADER)
    machine, needed = hook.elf_info(built_library)
    assert machine == 62 and "libc.so.6" in needed


@pytest.mark.parametrize("content, expected", [
    (None, "does not exist"), (b"not a library", "not a 64-bit"),
    (b"\x7fELF\x02\x01" + bytes(10) + b"\x03\x00\x3e\x00" + bytes(20), "damaged ELF")])
def test_a_missing_or_foreign_file_is_refused(hook, tmp_path, content, expected):
    path = tmp_path / "libLodestoneC.so"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(hook.LibraryProblem, match=expected):
        hook.check_library(path, HEADER)


def test_a_library_for_another_machine_is_refused(hook, built_library):
    with pytest.raises(hook.LibraryProblem, match="not for this aarch64 machine"):
        hook.check_library(built_library, HEADER, machine="aarch64")


def test_a_library_that_needs_the_toolchain_runtime_is_refused(hook, built_library, monkeypatch):
    machine, needed = hook.elf_info(built_library)
    monkeypatch.setattr(hook, "elf_info", lambda path: (machine, needed + ["libswiftCore.so"]))
    with pytest.raises(hook.LibraryProblem, match=r"libswiftCore\.so.*-static-stdlib"):
        hook.check_library(built_library, HEADER)


def test_a_library_of_another_abi_is_refused(hook, built_library, tmp_path):
    header = tmp_path / "lodestone.h"
    header.write_text(HEADER.read_text().replace("#define LDS_ABI_VERSION ", "#define LDS_ABI_VERSION 9"))
    with pytest.raises(hook.LibraryProblem, match="implements C ABI"):
        hook.check_library(built_library, header)


def test_building_a_wheel_of_a_missing_library_stops_at_build_time(hook, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LODESTONE_LIBRARY", str(tmp_path / "nothing.so"))

    class Hook(hook.CustomBuildHook):
        target_name = "wheel"
        root = str(REPO / "Python")
        app = types.SimpleNamespace(display_info=lambda _: None)

    with pytest.raises(SystemExit) as stopped:
        object.__new__(Hook).initialize("standard", {})
    assert stopped.value.code == 1
    assert "nothing.so does not exist" in capsys.readouterr().err
