/// Arbiter's release.
public enum ArbiterRelease {
    /// The package's version, the one place it is written: `arbiter --version` prints it, and
    /// CHANGELOG.md has a section for each. Semantic versioning; before 1.0 a minor version may
    /// change the API.
    public static let version = "0.1.0"
}
