import CLodestoneLZ4

/// LZ4 block compression (the only file that calls liblz4).
enum LZ4Codec {
    static func compress(_ input: [UInt8]) -> [UInt8] {
        guard !input.isEmpty else { return [] }
        let bound = Int(LZ4_compressBound(Int32(input.count)))
        var out = [UInt8](repeating: 0, count: bound)
        let n = input.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                LZ4_compress_default(src.baseAddress!.assumingMemoryBound(to: CChar.self),
                                     dst.baseAddress!.assumingMemoryBound(to: CChar.self),
                                     Int32(input.count), Int32(bound))
            }
        }
        precondition(n > 0, "LZ4 compression failed")
        return Array(out[0..<Int(n)])
    }

    static func decompress(_ input: UnsafeRawBufferPointer, rawLength: Int) -> [UInt8]? {
        if rawLength == 0 { return input.isEmpty ? [] : nil }
        // LZ4 expands at most 255:1; check before allocating.
        guard !input.isEmpty, rawLength <= Int(Int32.max), input.count <= Int(Int32.max),
              rawLength <= input.count * 255 + 16 else { return nil }
        var out = [UInt8](repeating: 0, count: rawLength)
        let n = out.withUnsafeMutableBytes { dst in
            LZ4_decompress_safe(input.baseAddress!.assumingMemoryBound(to: CChar.self),
                                dst.baseAddress!.assumingMemoryBound(to: CChar.self),
                                Int32(input.count), Int32(rawLength))
        }
        return Int(n) == rawLength ? out : nil
    }
}
