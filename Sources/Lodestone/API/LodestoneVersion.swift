/// This release of Lodestone, as the `lodestone` command (`--version`), the
/// C ABI (`lds_version`) and the Python package report it.
public enum LodestoneVersion {
    /// The release number, such as "0.1.0". `Python/pyproject.toml` carries
    /// the same number (the Python tests check that they agree).
    public static let string = "0.1.0"
}
