import Testing
@_spi(LodestoneTools) @testable import Lodestone

@Suite("Key table")
struct KeyTableTests {
    @Test("random inserts and removals agree with a Dictionary model")
    func againstModel() {
        var table = KeyTable()
        var model: [UInt64: UInt32] = [:]
        var keyOfNode: [UInt32: UInt64] = [:]
        var rng = Fixtures.SeededGenerator(seed: 77)
        var nextNode: UInt32 = 0
        let keyOf: (UInt32) -> UInt64 = { keyOfNode[$0]! }
        for step in 0..<20_000 {
            // Small key space: many collisions, removals and re-inserts.
            let key = UInt64.random(in: 0..<3000, using: &rng) &* 0x1_0000_0001
            if model[key] == nil && step % 3 != 0 {
                keyOfNode[nextNode] = key
                table.insert(key: key, node: nextNode, keyOf: keyOf)
                model[key] = nextNode
                nextNode += 1
            } else {
                #expect(table.remove(key: key, keyOf: keyOf) == model.removeValue(forKey: key))
            }
            #expect(table.count == model.count)
        }
        for (key, node) in model { #expect(table.node(forKey: key, keyOf: keyOf) == node) }
        #expect(table.node(forKey: 12_345_678_901, keyOf: keyOf) == nil)
    }
}
