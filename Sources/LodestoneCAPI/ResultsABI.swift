// lds_matches and lds_text: variable-size results (lodestone.h, "Results").
import Lodestone

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Contiguous buffers the C side reads in place until the handle is freed.
final class MatchesBox {
    let groupOffsets: UnsafeMutableBufferPointer<Int64>
    let scores: UnsafeMutableBufferPointer<Float>
    let ids: StringArray
    let values: UnsafeMutableBufferPointer<Float>?
    let metadata: StringArray?
    /// With values: each match's sparse vector, components
    /// `sparseOffsets[i] ..< sparseOffsets[i + 1]` (equal: none).
    let sparseOffsets: UnsafeMutableBufferPointer<Int64>?
    let sparseIndices: UnsafeMutableBufferPointer<UInt32>?
    let sparseValues: UnsafeMutableBufferPointer<Float>?

    /// `groups` lists of matches; values and metadata as asked.
    init(groups: [[Match]], dimension: Int, values includeValues: Bool, metadata includeMetadata: Bool) {
        let total = groups.reduce(0) { $0 + $1.count }
        groupOffsets = .allocate(capacity: groups.count + 1)
        var at: Int64 = 0
        for (g, list) in groups.enumerated() {
            groupOffsets[g] = at
            at += Int64(list.count)
        }
        groupOffsets[groups.count] = at
        scores = .allocate(capacity: max(total, 1))
        let all = groups.joined()
        for (i, m) in all.enumerated() { scores[i] = m.score }
        ids = StringArray(all.map(\.id))
        if includeValues {
            let v = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(total * dimension, 1))
            for (i, m) in all.enumerated() {
                for j in 0..<dimension { v[i * dimension + j] = m.values?[j] ?? .nan }
            }
            values = v
        } else {
            values = nil
        }
        metadata = includeMetadata ? StringArray(all.map { $0.metadata?.jsonText ?? "" }) : nil
        if includeValues {
            let components = all.reduce(0) { $0 + ($1.sparseValues?.indices.count ?? 0) }
            let offsets = UnsafeMutableBufferPointer<Int64>.allocate(capacity: total + 1)
            let indices = UnsafeMutableBufferPointer<UInt32>.allocate(capacity: max(components, 1))
            let values = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(components, 1))
            var at = 0
            for (i, m) in all.enumerated() {
                offsets[i] = Int64(at)
                for (t, v) in zip(m.sparseValues?.indices ?? [], m.sparseValues?.values ?? []) {
                    indices[at] = t
                    values[at] = v
                    at += 1
                }
            }
            offsets[total] = Int64(at)
            (sparseOffsets, sparseIndices, sparseValues) = (offsets, indices, values)
        } else {
            (sparseOffsets, sparseIndices, sparseValues) = (nil, nil, nil)
        }
    }

    deinit {
        groupOffsets.deallocate()
        scores.deallocate()
        values?.deallocate()
        sparseOffsets?.deallocate()
        sparseIndices?.deallocate()
        sparseValues?.deallocate()
    }
}

/// Strings as one UTF-8 buffer plus offsets (lodestone.h's string arrays).
final class StringArray {
    let bytes: UnsafeMutableBufferPointer<CChar>
    let offsets: UnsafeMutableBufferPointer<Int64>

    init(_ strings: [String]) {
        let total = strings.reduce(0) { $0 + $1.utf8.count }
        bytes = .allocate(capacity: total + 1)
        offsets = .allocate(capacity: strings.count + 1)
        var at = 0
        for (i, s) in strings.enumerated() {
            offsets[i] = Int64(at)
            for b in s.utf8 {
                bytes[at] = CChar(bitPattern: b)
                at += 1
            }
        }
        offsets[strings.count] = Int64(at)
        bytes[at] = 0
    }

    deinit {
        bytes.deallocate()
        offsets.deallocate()
    }
}

/// A text (JSON) result.
final class TextBox {
    let bytes: UnsafeMutablePointer<CChar>
    let length: Int

    init(_ text: String) {
        length = text.utf8.count
        bytes = strdup(text)!
    }

    deinit { free(bytes) }
}

private func matches(_ handle: OpaquePointer?) -> MatchesBox? { try? object(handle, MatchesBox.self, name: "matches") }

@_cdecl("lds_matches_groups")
public func lds_matches_groups(_ handle: OpaquePointer?) -> Int64 {
    matches(handle).map { Int64($0.groupOffsets.count - 1) } ?? 0
}

@_cdecl("lds_matches_offsets")
public func lds_matches_offsets(_ handle: OpaquePointer?) -> UnsafePointer<Int64>? {
    matches(handle).map { UnsafePointer($0.groupOffsets.baseAddress!) }
}

@_cdecl("lds_matches_count")
public func lds_matches_count(_ handle: OpaquePointer?) -> Int64 {
    matches(handle).map { $0.groupOffsets[$0.groupOffsets.count - 1] } ?? 0
}

@_cdecl("lds_matches_scores")
public func lds_matches_scores(_ handle: OpaquePointer?) -> UnsafePointer<Float>? {
    matches(handle).map { UnsafePointer($0.scores.baseAddress!) }
}

@_cdecl("lds_matches_ids")
public func lds_matches_ids(_ handle: OpaquePointer?, _ offsets: UnsafeMutablePointer<UnsafePointer<Int64>?>?)
    -> UnsafePointer<CChar>?
{
    guard let box = matches(handle) else { return nil }
    offsets?.pointee = UnsafePointer(box.ids.offsets.baseAddress!)
    return UnsafePointer(box.ids.bytes.baseAddress!)
}

@_cdecl("lds_matches_values")
public func lds_matches_values(_ handle: OpaquePointer?) -> UnsafePointer<Float>? {
    matches(handle)?.values.map { UnsafePointer($0.baseAddress!) }
}

@_cdecl("lds_matches_metadata")
public func lds_matches_metadata(_ handle: OpaquePointer?, _ offsets: UnsafeMutablePointer<UnsafePointer<Int64>?>?)
    -> UnsafePointer<CChar>?
{
    guard let metadata = matches(handle)?.metadata else { return nil }
    offsets?.pointee = UnsafePointer(metadata.offsets.baseAddress!)
    return UnsafePointer(metadata.bytes.baseAddress!)
}

@_cdecl("lds_matches_sparse")
public func lds_matches_sparse(_ handle: OpaquePointer?, _ indices: UnsafeMutablePointer<UnsafePointer<UInt32>?>?,
                               _ values: UnsafeMutablePointer<UnsafePointer<Float>?>?) -> UnsafePointer<Int64>? {
    guard let box = matches(handle), let offsets = box.sparseOffsets else { return nil }
    indices?.pointee = UnsafePointer(box.sparseIndices!.baseAddress!)
    values?.pointee = UnsafePointer(box.sparseValues!.baseAddress!)
    return UnsafePointer(offsets.baseAddress!)
}

@_cdecl("lds_matches_free")
public func lds_matches_free(_ handle: OpaquePointer?) { release(handle) }

@_cdecl("lds_text_data")
public func lds_text_data(_ handle: OpaquePointer?, _ length: UnsafeMutablePointer<Int>?) -> UnsafePointer<CChar>? {
    guard let box = try? object(handle, TextBox.self, name: "text") else { return nil }
    length?.pointee = box.length
    return UnsafePointer(box.bytes)
}

@_cdecl("lds_text_free")
public func lds_text_free(_ handle: OpaquePointer?) { release(handle) }
