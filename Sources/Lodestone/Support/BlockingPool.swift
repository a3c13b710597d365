import Dispatch
import Synchronization

/// The threads the async APIs run blocking work on (writes that wait for
/// `fdatasync`, persists, imports, batch queries), so that none of it ever
/// occupies a thread of Swift's cooperative pool, which an event loop or
/// other tasks need. Bounded: a fixed number of threads, started on first
/// use; work beyond them waits its turn in order.
final class BlockingPool: Sendable {
    /// The pool the async APIs share: one thread per processor, at least two.
    static let shared = BlockingPool(threads: max(2, Parallelism.defaultThreadCount))

    private let jobs = Locked<(queue: [(@Sendable () -> Void)?], head: Int)>(([], 0))
    private let pending = DispatchSemaphore(value: 0)

    init(threads: Int) {
        for i in 0..<threads { SystemCalls.startThread(name: "lodestone-io \(i)") { [self] in self.serve() } }
    }

    /// Runs jobs as they come, forever (the pool lives as long as the process).
    private func serve() -> Never {
        while true {
            pending.wait()
            let job = jobs.withLock { state -> (@Sendable () -> Void)? in
                let job = state.queue[state.head]
                state.queue[state.head] = nil
                state.head += 1
                if state.head == state.queue.count { state.queue.removeAll(keepingCapacity: true); state.head = 0 }
                return job
            }
            job?()
        }
    }

    private func submit(_ job: @escaping @Sendable () -> Void) {
        jobs.withLock { $0.queue.append(job) }
        pending.signal()
    }

    /// Runs `body` on one of the pool's threads and returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws(LodestoneError) -> T) async throws(LodestoneError) -> T {
        let result: Result<T, LodestoneError> = await withCheckedContinuation { continuation in
            submit {
                do throws(LodestoneError) {
                    continuation.resume(returning: .success(try body()))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    /// Runs `body` on the pool with a flag that turns true when the calling
    /// task is cancelled; `body` checks it between steps of long work.
    func runCancellable<T: Sendable>(
        _ body: @escaping @Sendable (CancellationFlag) throws(LodestoneError) -> T
    ) async throws(LodestoneError) -> T {
        let flag = CancellationFlag()
        if Task.isCancelled { flag.cancel() }
        let result: Result<T, LodestoneError> = await withTaskCancellationHandler {
            do throws(LodestoneError) {
                return .success(try await run { () throws(LodestoneError) -> T in try body(flag) })
            } catch {
                return .failure(error)
            }
        } onCancel: {
            flag.cancel()
        }
        return try result.get()
    }
}

/// Set once the task that started some work is cancelled.
final class CancellationFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isCancelled: Bool { value.load(ordering: .relaxed) }
    func cancel() { value.store(true, ordering: .relaxed) }
}
