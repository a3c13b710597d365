import Foundation

/// Turns text into BM25 sparse vectors, with nothing to download: fit it on
/// a corpus (document frequencies and the average length), then encode
/// documents for ``Record/sparseValues`` and queries for a sparse or
/// hybrid query; a query vector's dot product with a document vector is the
/// document's BM25 score for the query (up to one factor per query).
///
/// The weights are pinecone-text's `BM25Encoder`'s: a document's term
/// weighs `tf / (tf + k1 (1 - b + b dl / avgdl))` (BM25's term factor
/// without its constant `k1 + 1`, which ranks the same); a query's term
/// weighs its `idf = ln((N + 1) / (df + 0.5))`, normalised to sum 1 (each
/// term once). Terms are ids by MurmurHash3 (x86, 32-bit, seed 0) of the
/// token's UTF-8, as pinecone-text hashes them; tokens come from
/// ``tokenize(_:)``.
public struct BM25Encoder: Sendable, Hashable, Codable {
    /// Term-frequency saturation (default 1.2).
    public var k1: Double
    /// Length normalisation, 0 to 1 (default 0.75).
    public var b: Double
    /// Documents fitted.
    public private(set) var documentCount = 0
    /// Tokens fitted.
    public private(set) var tokenCount = 0
    /// Per term id, the documents fitted that hold it.
    public private(set) var documentFrequencies: [UInt32: Int] = [:]

    /// An encoder with these parameters, fitted on nothing yet.
    public init(k1: Double = 1.2, b: Double = 0.75) {
        self.k1 = k1
        self.b = b
    }

    /// The longest token kept, in Unicode scalars.
    public static let maximumTokenLength = 64

    /// The tokens of `text`: NFKC-normalised and lowercased, then the
    /// maximal runs of letters and numbers (Unicode general categories L
    /// and N); everything else separates them. No stop words and no
    /// stemming, so it works the same in every language; tokens longer than
    /// ``maximumTokenLength`` are dropped.
    public static func tokenize(_ text: String) -> [String] {
        var tokens: [String] = []
        var current = String.UnicodeScalarView()
        func flush() {
            if !current.isEmpty && current.count <= maximumTokenLength { tokens.append(String(current)) }
            current = String.UnicodeScalarView()
        }
        for scalar in text.precomposedStringWithCompatibilityMapping.lowercased().unicodeScalars {
            switch scalar.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
                 .decimalNumber, .letterNumber, .otherNumber:
                current.append(scalar)
            default:
                flush()
            }
        }
        flush()
        return tokens
    }

    /// The term id of a token: MurmurHash3 x86 32-bit, seed 0, of its UTF-8.
    public static func termID(_ token: String) -> UInt32 {
        var h: UInt32 = 0
        let c1: UInt32 = 0xcc9e_2d51, c2: UInt32 = 0x1b87_3593
        let bytes = Array(token.utf8)
        var i = 0
        while i + 4 <= bytes.count {
            var k = UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24
            k = (k &* c1).rotatedLeft(15) &* c2
            h ^= k
            h = h.rotatedLeft(13) &* 5 &+ 0xe654_6b64
            i += 4
        }
        var k: UInt32 = 0
        let tail = bytes.count & 3
        if tail >= 3 { k ^= UInt32(bytes[i + 2]) << 16 }
        if tail >= 2 { k ^= UInt32(bytes[i + 1]) << 8 }
        if tail >= 1 {
            k ^= UInt32(bytes[i])
            h ^= (k &* c1).rotatedLeft(15) &* c2
        }
        h ^= UInt32(truncatingIfNeeded: bytes.count)
        h ^= h >> 16
        h = h &* 0x85eb_ca6b
        h ^= h >> 13
        h = h &* 0xc2b2_ae35
        h ^= h >> 16
        return h
    }

    /// Counts of each term id in `text`, and its length in tokens.
    static func termCounts(_ text: String) -> (counts: [UInt32: Int], length: Int) {
        let tokens = tokenize(text)
        var counts: [UInt32: Int] = [:]
        for t in tokens { counts[termID(t), default: 0] += 1 }
        return (counts, tokens.count)
    }

    /// Adds `texts` to what the encoder has fitted.
    public mutating func fit(_ texts: some Sequence<String>) {
        for text in texts {
            let (counts, length) = Self.termCounts(text)
            documentCount += 1
            tokenCount += length
            for term in counts.keys { documentFrequencies[term, default: 0] += 1 }
        }
    }

    /// The average document length fitted, in tokens (1 before fitting).
    public var averageLength: Double { documentCount > 0 && tokenCount > 0 ? Double(tokenCount) / Double(documentCount) : 1 }

    /// A document's vector: each term's saturated, length-normalised
    /// frequency (empty for text without a token).
    public func encodeDocument(_ text: String) -> SparseVector {
        let (counts, length) = Self.termCounts(text)
        return Self.documentVector(counts, length: length, averageLength: averageLength, k1: k1, b: b)
    }

    /// A document's vector from its term counts and length (shared with
    /// text indexes, which keep their own average length).
    static func documentVector(_ counts: [UInt32: Int], length: Int, averageLength: Double, k1: Double, b: Double)
        -> SparseVector
    {
        let norm = k1 * (1 - b + b * Double(length) / averageLength)
        let terms = counts.keys.sorted()
        return SparseVector(indices: terms, values: terms.map { t in
            let tf = Double(counts[t]!)
            return Float(tf / (tf + norm))
        })
    }

    /// A query's vector: each distinct term's idf over the fitted documents,
    /// normalised to sum 1 (empty for text without a token).
    public func encodeQuery(_ text: String) -> SparseVector {
        Self.queryVector(text, documents: documentCount) { documentFrequencies[$0] ?? 0 }
    }

    /// A query's vector given the documents and each term's document
    /// frequency (shared with text indexes, which count them as they change).
    static func queryVector(_ text: String, documents: Int, frequency: (UInt32) -> Int) -> SparseVector {
        let terms = termCounts(text).counts.keys.sorted()
        let n = Double(documents)
        let idf = terms.map { log((n + 1) / (Double(frequency($0)) + 0.5)) }
        let sum = idf.reduce(0, +)
        return SparseVector(indices: terms, values: idf.map { Float(sum > 0 ? $0 / sum : 0) })
    }
}

extension UInt32 {
    @inline(__always) fileprivate func rotatedLeft(_ n: UInt32) -> UInt32 { self << n | self >> (32 - n) }
}
