/// SplitMix64 (Steele, Lea and Flood): a tiny, fast, repeatable generator.
/// Lodestone draws HNSW levels and hashes keys with its mixing function;
/// it is public so that tools and tests built on Lodestone can make
/// reproducible data and fault plans with the same generator.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    /// The generator's state: the seed, advanced by the golden gamma per draw.
    public private(set) var state: UInt64

    /// The increment per draw (2^64 / φ, odd).
    public static let gamma: UInt64 = 0x9E37_79B9_7F4A_7C15

    /// A generator whose sequence is fixed by `seed`.
    public init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= Self.gamma
        return Self.mix(state)
    }

    /// SplitMix64's finaliser: a bijection of 64-bit values that spreads
    /// every input bit over the output (a good hash for integer keys).
    @inline(__always)
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
