import Synchronization

extension Index {
    /// Folds the log into the index's files, so that reopening maps them
    /// instead of replaying the log. Queries continue meanwhile.
    ///
    /// On an HNSW index whose changes since its segment take at most
    /// ``deltaFraction`` of the segment's size, this writes only those
    /// changes, as a delta file beside the segment (it replaces the previous
    /// delta: each holds every change since the segment), so persisting a
    /// small change costs in proportion to the change. Otherwise, and always
    /// with `merge` (or on a flat index), it writes one new segment of
    /// everything, which drops the delta.
    public func persist(merge: Bool = false) throws(LodestoneError) {
        try checkOpen()
        try checkWritable()
        try store.persist(write: { (segment, delta) throws(LodestoneError) in
            try write(segmentPath: segment, delta: merge ? nil : delta)
        }, committed: segmentCommitted)
    }

    /// A persist writes a delta instead of a whole segment while the changes
    /// take at most this fraction of the segment's bytes.
    public static let deltaFraction = 0.25

    /// Writes a consistent snapshot of the index, as of this call, into
    /// `directory` (created if missing; it must not hold an index):
    /// ``Database/restoreIndex(name:from:durability:)`` opens it as a new
    /// index without re-inserting anything. What the log holds is first
    /// folded into a new segment (``persist(merge:)-8bgq6``); the segment, which is
    /// immutable, is then hard-linked, so a snapshot of an index persisted
    /// since its last write costs no copy. Queries continue meanwhile.
    public func snapshot(to directory: String) throws(LodestoneError) {
        try checkOpen()
        // Read-only, it can snapshot only what its segment already holds.
        if isReadOnly && store.logBytes > 0 { throw .readOnly(name: name) }
        try store.snapshot(into: directory, write: { (segment, delta) throws(LodestoneError) in
            try write(segmentPath: segment, delta: delta)
        }, committed: segmentCommitted)
    }

    /// Writes a delta at `delta` when one may (see ``persist(merge:)``),
    /// else a segment of everything at `segmentPath`; the store's writer
    /// lock is held, so nothing changes the table or engine meanwhile.
    private func write(segmentPath: String, delta: DurableStore.DeltaTarget?) throws(LodestoneError) -> DurableStore.Written {
        try checkOpen()
        if let delta, let changed = engine.changedBytes() {
            if let segmentBytes = StorageIO.fileSize(delta.segment), Double(changed) <= Index.deltaFraction * Double(segmentBytes) {
                try engine.persistDelta(to: delta.path, extraSections: [table.changesSection(fingerprint: fingerprint)])
                return .delta
            }
        }
        let renumbered = try engine.persist(to: segmentPath, embeddingModel: embeddingModel,
                                            extraSections: table.sections(fingerprint: fingerprint))
        lastSegmentRenumbered.store(renumbered, ordering: .relaxed)
        return .segment
    }

    /// Runs once a persist's files are current (writer lock held).
    private func segmentCommitted(_ written: DurableStore.Written) {
        guard written == .segment else { return }
        let renumbered = lastSegmentRenumbered.load(ordering: .relaxed)
        if renumbered { store.activity.compacted() }
        engine.segmentCommitted(renumbered: renumbered)
        table.segmentWritten()
    }

    /// The log size past which a write folds it into a new segment
    /// (``persist(merge:)-8bgq6``), so that reopening maps a segment instead of replaying
    /// (re-inserting) a long log: 256 MiB, or the segment's size if larger.
    /// Changes a bulk load applies without logging (``LoadCommit/persist``)
    /// count as log bytes here.
    public static let autoPersistLogBytes = 256 << 20

    /// Sets the log size past which a write persists, for this index until
    /// it closes (tools and tests; the default is ``autoPersistLogBytes``).
    @_spi(LodestoneTools)
    public func setAutoPersistBytes(_ bytes: Int) {
        autoPersistBytes.store(max(0, bytes), ordering: .relaxed)
    }

    func persistIfLogIsLarge() throws(LodestoneError) {
        let pending = store.pendingBytes
        guard pending > autoPersistBytes.load(ordering: .relaxed) else { return }
        let segmentBytes = store.segmentPath.flatMap(StorageIO.fileSize) ?? 0
        if pending > segmentBytes { try persist() }
    }
}
