#!/usr/bin/env bash
# Checks that the installed Python package runs on the Swift runtime it
# bundles: in a private mount namespace, the toolchain's runtime folder is
# hidden behind an empty directory, then the package builds, searches and
# reopens an index. Needs root (unshare -m); the venv is the first argument.
set -euo pipefail
venv="${1:?usage: Scripts/check-python-bundle.sh VENV}"
swift_bin="$(readlink -f "$(command -v swift || echo /opt/swift/usr/bin/swift)")"
runtime="$(dirname "$swift_bin")/../lib/swift/linux"
runtime="$(cd "$runtime" && pwd)"
empty="$(mktemp -d)"
unshare -m bash -euo pipefail -c "
mount --bind '$empty' '$runtime'
test -z \"\$(ls '$runtime')\"
'$venv/bin/python' - <<'PY'
import os, tempfile, numpy as np, lodestone
info = lodestone.library_info()
assert '/site-packages/lodestone/_lib/' in info['path'], info
maps = open('/proc/self/maps').read()
x = np.random.default_rng(1).standard_normal((500, 16)).astype(np.float32)
ix = lodestone.HNSWIndex(16, 'euclidean'); ix.add(np.arange(500), x, threads=2)
path = os.path.join(tempfile.mkdtemp(), 'i.lodestone'); ix.persist(path)
ids, _ = lodestone.open_index(path).search(x[:3], 1)
assert ids[:, 0].tolist() == [0, 1, 2], ids
swift_libs = sorted({l.split()[-1] for l in open('/proc/self/maps') if 'libswiftCore' in l})
assert all('/site-packages/lodestone/_lib/' in p for p in swift_libs), swift_libs
print('bundled runtime ok:', swift_libs[0])
PY
"
rmdir "$empty"
