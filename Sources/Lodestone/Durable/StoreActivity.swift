import Synchronization

/// Counters of what a durable store has done since it was opened in this
/// process (log syncs, persists and their time), shared by the store and
/// each log it writes. Monitoring reads them (``Index/activity``); updating
/// them costs a few relaxed atomic adds per sync or persist, never per query.
final class StoreActivity: Sendable {
    private let syncs = Atomic<Int>(0)
    private let syncNanoseconds = Atomic<Int>(0)
    private let persists = Atomic<Int>(0)
    private let deltas = Atomic<Int>(0)
    private let persistNanoseconds = Atomic<Int>(0)
    private let compactions = Atomic<Int>(0)

    /// Runs `sync` (an `fsync`/`fdatasync` of the log) and counts it with its time.
    @inline(__always)
    func timedSync(_ sync: () -> Int32) -> Int32 {
        let start = ContinuousClock.now
        let result = sync()
        syncs.add(1, ordering: .relaxed)
        syncNanoseconds.add(Self.nanoseconds(since: start), ordering: .relaxed)
        return result
    }

    /// Counts a persist that wrote a segment (or, `delta`, a delta file)
    /// and took the time since `start`.
    func persisted(delta: Bool, since start: ContinuousClock.Instant) {
        persists.add(1, ordering: .relaxed)
        if delta { deltas.add(1, ordering: .relaxed) }
        persistNanoseconds.add(Self.nanoseconds(since: start), ordering: .relaxed)
    }

    /// Counts a persist whose segment dropped removed rows and renumbered the rest.
    func compacted() { compactions.add(1, ordering: .relaxed) }

    /// The counters now, for ``IndexActivity``.
    var snapshot: (syncs: Int, syncSeconds: Double, persists: Int, deltas: Int, persistSeconds: Double, compactions: Int) {
        (syncs.load(ordering: .relaxed), Double(syncNanoseconds.load(ordering: .relaxed)) / 1e9,
         persists.load(ordering: .relaxed), deltas.load(ordering: .relaxed),
         Double(persistNanoseconds.load(ordering: .relaxed)) / 1e9, compactions.load(ordering: .relaxed))
    }

    private static func nanoseconds(since start: ContinuousClock.Instant) -> Int {
        let d = (ContinuousClock.now - start).components
        return Int(d.seconds) * 1_000_000_000 + Int(d.attoseconds / 1_000_000_000)
    }
}
