import Dispatch
import Synchronization

/// How many threads Lodestone uses when a call does not say.
public enum Parallelism {
    /// Every processor online (batch queries, bulk upserts, imports and
    /// filtered scans default to it; single queries use one thread).
    public static var defaultThreadCount: Int { SystemCalls.onlineProcessors }
}

/// Runs `body(worker)` for worker = 0..<threads concurrently and returns once
/// all have finished.
///
/// Unlike `DispatchQueue.concurrentPerform`, `body` need not be `@Sendable`:
/// the hot loops share raw buffers whose disjoint parts each worker writes.
/// The caller guarantees that workers touch shared memory without races
/// (each writes only the slots it claimed, e.g. through an atomic counter).
func parallelRun(threads: Int, _ body: (Int) -> Void) {
    if threads <= 1 {
        body(0)
        return
    }
    withoutActuallyEscaping(body) { escapable in
        let box = UncheckedSendable(escapable)
        DispatchQueue.concurrentPerform(iterations: threads) { box.value($0) }
    }
}

/// Carries a value across a concurrency boundary whose safety the compiler
/// cannot see; every use states why it is race-free.
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Hands `0..<count` out in runs of `grain` to up to `threads` workers
/// (`parallelRun`), each claiming the next run through an atomic counter
/// so that faster workers take more, and calls `body` with every run;
/// returns once all are done. `body` must only write what its run owns.
func parallelFor(count: Int, threads: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
    guard count > 0 else { return }
    let next = Atomic<Int>(0)
    parallelRun(threads: min(threads, (count + grain - 1) / grain)) { _ in
        while true {
            let start = next.add(grain, ordering: .relaxed).oldValue
            if start >= count { break }
            body(start..<min(count, start + grain))
        }
    }
}
