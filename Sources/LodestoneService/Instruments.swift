#if ServiceIntegration
import Logging
import Synchronization
import Tracing

/// What a service's index handles share: the logger, the tracer, and
/// whether writes are still accepted.
final class Instruments: Sendable {
    let logger: Logger
    /// nil: the tracer bootstrapped in `InstrumentationSystem`, read at each
    /// span (so bootstrapping after the service starts still takes effect).
    private let tracer: (any Tracer)?
    private let writesOpen = Atomic<Bool>(true)

    init(logger: Logger, tracer: (any Tracer)?) {
        self.logger = logger
        self.tracer = tracer
    }

    var acceptsWrites: Bool { writesOpen.load(ordering: .acquiring) }

    /// Refuses writes from now on (shutdown has begun).
    func closeWrites() { writesOpen.store(false, ordering: .releasing) }

    /// A span for `operation` on `index`, child of the task's current span;
    /// nil when the tracer would not record it (nothing to fill in).
    func startSpan(_ operation: IndexMetrics.Operation, index: String) -> (any Span)? {
        let span: any Span = tracer.map { $0.startSpan(operation.spanName, ofKind: .internal) }
            ?? InstrumentationSystem.tracer.startSpan(operation.spanName, ofKind: .internal)
        guard span.isRecording else {
            span.end()
            return nil
        }
        span.attributes["lodestone.index"] = index
        return span
    }

    static func nanoseconds(since start: ContinuousClock.Instant) -> Int64 {
        let d = (ContinuousClock.now - start).components
        return d.seconds * 1_000_000_000 + d.attoseconds / 1_000_000_000
    }
}
#endif
