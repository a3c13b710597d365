import Foundation
import Testing
@_spi(LodestoneTools) @testable import Lodestone

@Suite("Vector files")
struct VectorFilesTests {
    static func tempPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("lodestone-\(UUID().uuidString)-\(name)").path
    }

    static func malformedReason(_ body: () throws -> Void) -> String? {
        do {
            try body()
            return nil
        } catch let LodestoneError.malformedFile(_, reason) {
            return reason
        } catch {
            return "unexpected \(error)"
        }
    }

    @Test("fvecs and ivecs round-trip")
    func roundTrip() throws {
        let f = Matrix(rows: 3, dimension: 5, values: (0..<15).map { Float($0) * 0.5 - 2 })
        let i = Matrix(rows: 2, dimension: 4, values: [1, -2, 3, 4, 5, 6, 7, Int32.max])
        let fp = Self.tempPath("a.fvecs"), ip = Self.tempPath("a.ivecs")
        defer { try? FileManager.default.removeItem(atPath: fp); try? FileManager.default.removeItem(atPath: ip) }
        try VectorFiles.writeFvecs(f, to: fp)
        try VectorFiles.writeIvecs(i, to: ip)
        let f2 = try VectorFiles.readFloats(fp), i2 = try VectorFiles.readInts(ip)
        #expect(f2.rows == 3 && f2.dimension == 5 && f2.values == f.values)
        #expect(i2.rows == 2 && i2.dimension == 4 && i2.values == i.values)
    }

    @Test("the real sample reads with its documented shapes")
    func sample() {
        let s = Fixtures.sample
        #expect(s.base.rows == 2000 && s.base.dimension == 384)
        #expect(s.queries.rows == 100 && s.truth.rows == 100 && s.truth.dimension == 100)
    }

    @Test("malformed fvecs files are refused with a reason naming the problem")
    func malformedVecs() throws {
        let good = VectorFiles.encodeVecs(Matrix(rows: 3, dimension: 4, values: [Float](repeating: 1, count: 12)))
        let cases: [(String, [UInt8], String)] = [
            ("empty", [], "empty"),
            ("short", [4, 0], "shorter than one record header"),
            ("truncated", Array(good.dropLast(3)), "truncated"),
            ("zero dimension", [0, 0, 0, 0], "dimension 0"),
            ("negative dimension", [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0], "dimension -1"),
            ("changing dimension", Array(good[0..<20]) + [3, 0, 0, 0] + [UInt8](repeating: 0, count: 16), "record 1 declares dimension 3"),
        ]
        for (name, bytes, expected) in cases {
            let path = Self.tempPath("\(name).fvecs")
            defer { try? FileManager.default.removeItem(atPath: path) }
            try VectorFiles.writeFile(path, bytes)
            let reason = Self.malformedReason { _ = try VectorFiles.readFloats(path) }
            #expect(reason?.contains(expected) == true, "\(name): \(reason ?? "no error")")
        }
        #expect(throws: LodestoneError.self) { _ = try VectorFiles.readFloats("/nonexistent/x.fvecs") }
        // ivecs share the parser; a cut ground-truth file is refused too.
        let truth = VectorFiles.encodeVecs(Matrix<Int32>(rows: 2, dimension: 3, values: [1, 2, 3, 4, 5, 6]))
        let path = Self.tempPath("cut.ivecs")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try VectorFiles.writeFile(path, Array(truth.dropLast(1)))
        let reason = Self.malformedReason { _ = try VectorFiles.readInts(path) }
        #expect(reason?.contains("record 1 is cut short") == true, "\(reason ?? "no error")")
    }

    static func npy(descr: String, shape: String, fortran: Bool = false, payload: [UInt8], version: UInt8 = 1) -> [UInt8] {
        var header = "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shape), }"
        let prefix = version == 1 ? 10 : 12
        while (prefix + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var out: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, version, 0]
        let len = header.utf8.count
        if version == 1 {
            out += [UInt8(len & 0xFF), UInt8(len >> 8)]
        } else {
            out += [UInt8(len & 0xFF), UInt8(len >> 8 & 0xFF), 0, 0]
        }
        return out + Array(header.utf8) + payload
    }

    @Test("npy float32 and int32 matrices read; malformed ones are refused")
    func npyFiles() throws {
        var payload = [UInt8]()
        for v in [Float](arrayLiteral: 1, 2, 3, 4, 5, 6) { v.appendLittleEndian(to: &payload) }
        for version: UInt8 in [1, 2] {
            let path = Self.tempPath("m.npy")
            defer { try? FileManager.default.removeItem(atPath: path) }
            try VectorFiles.writeFile(path, Self.npy(descr: "<f4", shape: "(2, 3)", payload: payload, version: version))
            let m = try VectorFiles.readFloats(path)
            #expect(m.rows == 2 && m.dimension == 3 && m.values == [1, 2, 3, 4, 5, 6])
        }
        let cases: [(String, [UInt8], String)] = [
            ("not npy", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], "magic"),
            ("float64", Self.npy(descr: "<f8", shape: "(2, 3)", payload: payload), "dtype <f8"),
            ("fortran", Self.npy(descr: "<f4", shape: "(2, 3)", fortran: true, payload: payload), "Fortran"),
            ("truncated", Self.npy(descr: "<f4", shape: "(2, 3)", payload: Array(payload.dropLast(4))), "truncated"),
            ("3-d", Self.npy(descr: "<f4", shape: "(1, 2, 3)", payload: payload), "not a 1-D or 2-D"),
            ("bad version", Array(Self.npy(descr: "<f4", shape: "(2, 3)", payload: payload, version: 9)), "version 9"),
        ]
        for (name, bytes, expected) in cases {
            let path = Self.tempPath("\(name).npy")
            defer { try? FileManager.default.removeItem(atPath: path) }
            try VectorFiles.writeFile(path, bytes)
            let reason = Self.malformedReason { _ = try VectorFiles.readFloats(path) }
            #expect(reason?.contains(expected) == true, "\(name): \(reason ?? "no error")")
        }
    }
}
