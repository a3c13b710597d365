#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
@_spi(LodestoneTools) import Lodestone
import Synchronization

/// What Pinecone says about an index that Lodestone itself does not keep:
/// its deployment (echoed back: there is one machine), tags, deletion
/// protection, creation time, and namespaces created empty.
struct PineconeSettings: Sendable, Equatable {
    /// Pinecone 2026-07's `deployment` object (`deployment_type` managed,
    /// pod or byoc, with its fields), as the client gave it.
    var deployment: [String: JSONValue]
    var tags: [String: String] = [:]
    var deletionProtection = false
    /// Seconds since 1970.
    var createdAt: Double
    /// Namespaces made with `POST /namespaces`, listed even while empty.
    var namespaces: Set<String> = []

    static let defaultDeployment: [String: JSONValue] = [
        "deployment_type": .string("managed"), "cloud": .string("aws"), "region": .string("us-east-1"),
    ]

    /// The legacy `spec` (API 2025-10 and earlier) of this deployment.
    var spec: JSONValue {
        func s(_ k: String, _ fallback: String) -> JSONValue { deployment[k] ?? .string(fallback) }
        switch deployment["deployment_type"] {
        case .string("pod"):
            return .object(["pod": .object([
                "environment": s("environment", "local"), "pod_type": s("pod_type", "p1.x1"),
                "pods": .number(1), "replicas": deployment["replicas"] ?? .number(1),
                "shards": deployment["shards"] ?? .number(1),
            ])])
        case .string("byoc"):
            return .object(["byoc": .object(["environment": s("environment", "local")])])
        default:
            return .object(["serverless": .object(["cloud": s("cloud", "aws"), "region": s("region", "us-east-1")])])
        }
    }

    /// The deployment a legacy `spec` describes (`serverless`, `pod` or
    /// `byoc`).
    static func deployment(fromSpec spec: Fields) throws(APIError) -> [String: JSONValue] {
        if let serverless = try spec.object("serverless") {
            return ["deployment_type": .string("managed"),
                    "cloud": .string(try serverless.string("cloud") ?? "aws"),
                    "region": .string(try serverless.string("region") ?? "us-east-1")]
        }
        if let pod = try spec.object("pod") {
            return ["deployment_type": .string("pod"),
                    "environment": .string(try pod.string("environment") ?? "local"),
                    "pod_type": .string(try pod.string("pod_type") ?? "p1.x1"),
                    "replicas": .number(Double(try pod.int("replicas", in: 1...100) ?? 1)),
                    "shards": .number(Double(try pod.int("shards", in: 1...100) ?? 1))]
        }
        if let byoc = try spec.object("byoc") {
            return ["deployment_type": .string("byoc"), "environment": .string(try byoc.string("environment") ?? "local")]
        }
        throw .badRequest("\"spec\" must hold one of \"serverless\", \"pod\" or \"byoc\"")
    }

    /// A 2026-07 `deployment` object, checked.
    static func deployment(from d: Fields) throws(APIError) -> [String: JSONValue] {
        switch try d.string("deployment_type") ?? "managed" {
        case "managed", "serverless":
            return ["deployment_type": .string("managed"), "cloud": .string(try d.string("cloud") ?? "aws"),
                    "region": .string(try d.string("region") ?? "us-east-1")]
        case "pod":
            return ["deployment_type": .string("pod"), "environment": .string(try d.string("environment") ?? "local"),
                    "pod_type": .string(try d.string("pod_type") ?? "p1.x1"),
                    "replicas": .number(Double(try d.int("replicas", in: 1...100) ?? 1)),
                    "shards": .number(Double(try d.int("shards", in: 1...100) ?? 1))]
        case "byoc":
            return ["deployment_type": .string("byoc"), "environment": .string(try d.string("environment") ?? "local")]
        case let other:
            throw .badRequest("\"deployment.deployment_type\" must be managed, pod or byoc, not \"\(other)\"")
        }
    }

    var json: JSONValue {
        .object([
            "deployment": .object(deployment),
            "tags": .object(tags.mapValues { .string($0) }),
            "deletion_protection": .bool(deletionProtection),
            "created_at": .number(createdAt),
            "namespaces": .array(namespaces.sorted().map { .string($0) }),
        ])
    }

    init(deployment: [String: JSONValue], createdAt: Double) {
        self.deployment = deployment
        self.createdAt = createdAt
    }

    init(json: JSONValue) throws(APIError) {
        let f = try Fields(json, place: "the index's server settings")
        guard let d = try f.object("deployment") else { throw .badRequest("settings file without a deployment") }
        deployment = d.values
        for (k, v) in try f.object("tags")?.values ?? [:] { if case let .string(s) = v { tags[k] = s } }
        deletionProtection = try f.bool("deletion_protection") ?? false
        if case let .number(t) = f.raw("created_at") { createdAt = t } else { createdAt = 0 }
        namespaces = Set(try f.strings("namespaces") ?? [])
    }
}

/// Creates one of the server's own folders in the database directory
/// (beside the indexes, which never list a name starting with ".").
func makeServerDirectory(_ path: String) throws(APIError) {
    do {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    } catch {
        throw APIError(status: .internalServerError, code: "UNKNOWN", message: "cannot create \(path): \(error)")
    }
}

/// The server's settings per index, one small JSON file each in
/// `<db>/.pinecone/` (beside the indexes, which never see it).
final class IndexCatalog: Sendable {
    private let directory: String
    private let cache = Mutex<[String: PineconeSettings]>([:])
    /// Held through a read-change-write, so two changes never lose one.
    private let changing = Mutex<Void>(())

    init(database: String) throws(APIError) {
        directory = database + "/.pinecone"
        try makeServerDirectory(directory)
    }

    private func path(_ name: String) -> String { directory + "/" + name + ".json" }

    /// The settings of `name` (the defaults for an index made without the
    /// server, by the library or the CLI).
    func settings(_ name: String) -> PineconeSettings {
        // Read under the cache's lock, so a store in between cannot be
        // overwritten by what the file said before it.
        cache.withLock { cache in
            if let s = cache[name] { return s }
            var settings = PineconeSettings(deployment: PineconeSettings.defaultDeployment, createdAt: 0)
            if let data = FileManager.default.contents(atPath: path(name)),
               let json = try? JSONValue.parse(bytes: data), let s = try? PineconeSettings(json: json) {
                settings = s
            }
            cache[name] = settings
            return settings
        }
    }

    /// Stores `name`'s settings (written to a new file, then renamed over
    /// the old one).
    func store(_ name: String, _ settings: PineconeSettings) throws(APIError) {
        var w = JSONWriter()
        w.json(settings.json)
        do {
            try StorageIO.replaceFile(path(name), with: w.bytes)
        } catch {
            throw APIError(status: .internalServerError, code: "UNKNOWN", message: "cannot write \(path(name)): \(error)")
        }
        cache.withLock { $0[name] = settings }
    }

    /// Changes `name`'s settings, one change at a time.
    func update(_ name: String, _ change: (inout PineconeSettings) throws(APIError) -> Void) throws(APIError) -> PineconeSettings {
        try changing.withLock { (_: inout Void) throws(APIError) -> PineconeSettings in
            var s = settings(name)
            try change(&s)
            try store(name, s)
            return s
        }
    }

    func remove(_ name: String) {
        _ = cache.withLock { $0.removeValue(forKey: name) }
        try? FileManager.default.removeItem(atPath: path(name))
    }
}
