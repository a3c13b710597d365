/// What an index has done since it was opened in this process, and what it
/// holds now: the figures a service exports as metrics (``Index/activity``).
/// The counters only grow while the index is open; each open starts them at
/// zero.
public struct IndexActivity: Sendable, Hashable {
    /// `fdatasync` calls on the write-ahead log (one per write under
    /// ``Durability/synchronous``, one per group under
    /// ``Durability/groupCommit``, none under ``Durability/none``).
    public var logSyncs: Int
    /// Seconds spent in those syncs, in all.
    public var logSyncSeconds: Double
    /// Persists that wrote a new segment or a delta (explicit, automatic
    /// when the log grows large, at close, or for a snapshot).
    public var persists: Int
    /// How many of those wrote only a delta of the changes.
    public var deltaPersists: Int
    /// Seconds spent persisting, in all.
    public var persistSeconds: Double
    /// Persists whose segment dropped removed records and renumbered the rest.
    public var compactions: Int
    /// Bytes in the write-ahead log now (what reopening would replay).
    public var logBytes: Int
    /// Bytes the vector engine holds now, allocated or mapped: vectors,
    /// links, codes and keys (record ids and metadata are not counted).
    public var vectorBytes: Int
    /// Records stored, in every namespace.
    public var recordCount: Int

    /// Creates a value (for tests and wrappers; ``Index/activity`` reads the real one).
    public init(logSyncs: Int = 0, logSyncSeconds: Double = 0, persists: Int = 0, deltaPersists: Int = 0,
                persistSeconds: Double = 0, compactions: Int = 0, logBytes: Int = 0, vectorBytes: Int = 0,
                recordCount: Int = 0) {
        self.logSyncs = logSyncs
        self.logSyncSeconds = logSyncSeconds
        self.persists = persists
        self.deltaPersists = deltaPersists
        self.persistSeconds = persistSeconds
        self.compactions = compactions
        self.logBytes = logBytes
        self.vectorBytes = vectorBytes
        self.recordCount = recordCount
    }
}

extension Index {
    /// Counters and sizes for monitoring (see ``IndexActivity``). Cheap
    /// enough to read every few seconds; reading it waits for no writer
    /// longer than one log append.
    public var activity: IndexActivity {
        let counters = store.activity.snapshot
        let (vectorBytes, records) = lock.reading { (engine.memoryBytes, table.count) }
        return IndexActivity(logSyncs: counters.syncs, logSyncSeconds: counters.syncSeconds,
                             persists: counters.persists, deltaPersists: counters.deltas,
                             persistSeconds: counters.persistSeconds, compactions: counters.compactions,
                             logBytes: store.logBytes, vectorBytes: vectorBytes, recordCount: records)
    }
}
