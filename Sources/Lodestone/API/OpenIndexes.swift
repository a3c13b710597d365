/// The indexes open in this process, by directory, so that every
/// ``Database`` on the same path hands out the same ``Index`` instance (as
/// SQLite and LMDB users expect of one process), instead of the second one
/// failing on the directory's `LOCK`.
///
/// Entries are weak: an index nobody holds any more is not kept open by
/// this table. Directories are told apart by device and inode, so two
/// spellings of one path (relative, through a symlink) meet here.
enum OpenIndexes {
    private struct DirectoryID: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    private struct Entry {
        weak var index: Index?
    }

    private static let table = Locked<[DirectoryID: Entry]>([:])

    private static func identity(_ directory: String) -> DirectoryID? {
        guard let st = SystemCalls.status(directory) else { return nil }
        return DirectoryID(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    /// The open index in `directory`, or the one `open` returns (then
    /// remembered). `open` runs under this table's lock, so two threads
    /// opening one directory get one instance.
    static func index(in directory: String, orOpen open: () throws(LodestoneError) -> Index)
        throws(LodestoneError) -> Index
    {
        try table.withLock { (table: inout [DirectoryID: Entry]) throws(LodestoneError) -> Index in
            let id = identity(directory)
            if let id, let index = table[id]?.index, index.isOpen { return index }
            let index = try open()
            if let id = id ?? identity(directory) { table[id] = Entry(index: index) }
            // Drop entries whose index went away, so the table stays small.
            table = table.filter { $0.value.index != nil }
            return index
        }
    }
}
