/// One candidate in a top-k selection: its rank value (smaller is better) and
/// an id that breaks ties (smaller wins), so every selection is deterministic.
@usableFromInline
struct Candidate: Comparable {
    @usableFromInline var distance: Float
    @usableFromInline var id: UInt64

    @inlinable init(distance: Float, id: UInt64) {
        self.distance = distance
        self.id = id
    }

    @inlinable static func < (a: Candidate, b: Candidate) -> Bool {
        a.distance < b.distance || (a.distance == b.distance && a.id < b.id)
    }
}

/// A bounded max-heap that keeps the `capacity` smallest candidates seen.
///
/// It works in memory it does not own (a slice of a caller's scratch buffer),
/// so a search that reuses its scratch allocates nothing per query, and nothing
/// at all per vector. The worst kept candidate sits at the root; `threshold`
/// lets a scan reject most vectors with one comparison.
@usableFromInline
struct TopKHeap {
    @usableFromInline let storage: UnsafeMutablePointer<Candidate>
    @usableFromInline let capacity: Int
    @usableFromInline var count: Int = 0

    /// `storage` must hold `capacity` candidates and outlive the heap.
    @inlinable init(storage: UnsafeMutablePointer<Candidate>, capacity: Int) {
        precondition(capacity > 0)
        self.storage = storage
        self.capacity = capacity
    }

    /// Distances above this cannot enter the heap (+inf while it is not full).
    @inlinable var threshold: Float {
        count < capacity ? .infinity : storage[0].distance
    }

    /// Whether the heap holds `capacity` candidates.
    @inlinable var isFull: Bool { count == capacity }

    /// Offers a candidate; keeps it if it is among the best `capacity` so far.
    @inlinable mutating func consider(_ c: Candidate) {
        if count < capacity {
            var i = count
            count += 1
            while i > 0 {
                let parent = (i - 1) >> 1
                if !(storage[parent] < c) { break }
                storage[i] = storage[parent]
                i = parent
            }
            storage[i] = c
        } else if c < storage[0] {
            siftDownFromRoot(c)
        }
    }

    @inlinable mutating func siftDownFromRoot(_ c: Candidate) {
        var i = 0
        while true {
            let l = 2 * i + 1
            if l >= count { break }
            var m = l
            let r = l + 1
            if r < count && storage[l] < storage[r] { m = r }
            if !(c < storage[m]) { break }
            storage[i] = storage[m]
            i = m
        }
        storage[i] = c
    }

    /// The kept candidates, best first. The heap is left empty.
    @inlinable mutating func drainSorted() -> [Candidate] {
        var result = UnsafeMutableBufferPointer(start: storage, count: count)
        result.sort()
        count = 0
        return Array(result)
    }
}
