# Shared set-up for the Scripts/: makes sure the Swift toolchain and the
# system libraries Lodestone links (OpenBLAS, LZ4, zlib; and HDF5, which the
# lodestone command loads to read ann-benchmarks' files) are there,
# installing the libraries with apt-get when they are missing. Sourced, not run.
set -euo pipefail

lodestone_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$lodestone_root"

if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH="/opt/swift/usr/bin:$PATH"
fi
if ! command -v swift >/dev/null 2>&1; then
    echo "error: no Swift toolchain on PATH. Install Swift 6.2 or later (https://www.swift.org/install/linux/) and retry." >&2
    exit 1
fi

lodestone_need_packages() {
    command -v pkg-config >/dev/null 2>&1 || return 0
    pkg-config --exists openblas liblz4 zlib hdf5 || return 0
    return 1
}

# Installs Debian packages with apt-get (through sudo when not root).
lodestone_apt_install() {
    local sudo_cmd=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo_cmd="sudo"; else
            echo "error: need root (or sudo) to apt-get install $*" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq "$@" >/dev/null
}

if lodestone_need_packages; then
    echo "Installing libopenblas-dev, liblz4-dev, zlib1g-dev, libhdf5-dev and pkg-config ..." >&2
    lodestone_apt_install libopenblas-dev liblz4-dev zlib1g-dev libhdf5-dev pkg-config
fi

# The release build of Tools/ (lodestone, lodestone-stress) that every script
# uses: the Swift runtime linked in, as Scripts/build-dist ships it. One set
# of flags, so that no script rebuilds what another built (a change of flags
# rebuilds everything, about 3 minutes here).
lodestone_build_tools() {
    swift build -c release --package-path Tools --static-swift-stdlib "$@"
}

# Python's venv and pip (Debian splits them out of python3), for the scripts
# that make virtual environments.
lodestone_ensure_venv() {
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        echo "Installing python3-venv and python3-pip ..." >&2
        lodestone_apt_install python3-venv python3-pip
    fi
}
