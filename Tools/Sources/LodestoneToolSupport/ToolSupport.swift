import Foundation
@_spi(LodestoneTools) import Lodestone

// What the `lodestone` command and the `lodestone-stress` drivers share.

/// A clean command-line failure: its message is all the user sees.
package struct CLIError: Error, CustomStringConvertible {
    package let description: String
    package init(_ message: String) { description = message }
}

/// One JSON object printed on one line, keys in insertion order.
package struct JSONLine {
    private var fields: [(String, String)] = []

    package init() {}

    package mutating func set(_ key: String, _ value: String) { fields.append((key, MetadataValue.string(value).jsonText)) }
    package mutating func set(_ key: String, _ value: Int) { fields.append((key, String(value))) }
    package mutating func set(_ key: String, _ value: Bool) { fields.append((key, value ? "true" : "false")) }
    package mutating func set(_ key: String, _ value: Double, digits: Int = 4) {
        fields.append((key, value.isFinite ? String(format: "%.\(digits)f", value) : "null"))
    }

    package var text: String { "{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}" }
}

/// A record's metadata as JSON text (`null` when it has none).
package func metadataJSON(_ m: Metadata?) -> String {
    guard let m, !m.isEmpty else { return "null" }
    return m.jsonText
}

/// Percentile of sorted samples (nearest rank).
package func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let rank = Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(max(rank, 0), sorted.count - 1)]
}

/// Seconds on a monotonic clock.
package func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
