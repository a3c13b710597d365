#!/usr/bin/env bash
# A Swift package that depends on Lodestone, as a library user writes it:
# resolving it must pin no other package (the server, the command and their
# dependencies live in Tools/, a package of their own; LodestoneService's
# behind a trait that is off by default). With --build it also builds and
# runs the consumer (a minute or two: the library in debug).
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
work="$(mktemp -d /tmp/lodestone-consumer-XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/Sources/App"
cat > "$work/Package.swift" <<SWIFT
// swift-tools-version: 6.0
import PackageDescription
let package = Package(
    name: "App",
    dependencies: [.package(name: "Lodestone", path: "$lodestone_root")],
    targets: [.executableTarget(name: "App", dependencies: [.product(name: "Lodestone", package: "Lodestone")])]
)
SWIFT
cat > "$work/Sources/App/main.swift" <<'SWIFT'
import Lodestone
let index = try HNSWIndex(dimension: 3, metric: .cosine)
try index.add([1, 0, 0], key: 1)
print(try index.search([1, 0.1, 0], k: 1).map(\.key))
SWIFT
(cd "$work" && swift package resolve)
pins=0
[ -f "$work/Package.resolved" ] && pins=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1])).get("pins", [])))' "$work/Package.resolved")
checkouts=$(ls "$work/.build/checkouts" 2>/dev/null | wc -l)
echo "a package depending on Lodestone: $pins pinned packages, $checkouts checked out"
[ "$pins" -eq 0 ] && [ "$checkouts" -eq 0 ] || { echo "error: depending on Lodestone pulls in other packages" >&2; exit 1; }
# The opt-in: the same package with the ServiceIntegration trait resolves
# the service integration's dependencies (and builds LodestoneService).
cp "$work/Package.swift" "$work/Package.swift.plain"
sed -i -e 's|swift-tools-version: 6.0|swift-tools-version: 6.1|' \
    -e 's|path: "'"$lodestone_root"'")|path: "'"$lodestone_root"'", traits: ["ServiceIntegration"])|' "$work/Package.swift"
rm -f "$work/Package.resolved"
(cd "$work" && swift package resolve)
with_trait=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1])).get("pins", [])))' "$work/Package.resolved")
echo "with the ServiceIntegration trait: $with_trait pinned packages"
[ "$with_trait" -gt 0 ] || { echo "error: the trait resolved nothing: is LodestoneService still behind it?" >&2; exit 1; }
mv "$work/Package.swift.plain" "$work/Package.swift"
rm -f "$work/Package.resolved"
if [ "${1:-}" = "--build" ]; then (cd "$work" && swift build -q && .build/debug/App); fi
