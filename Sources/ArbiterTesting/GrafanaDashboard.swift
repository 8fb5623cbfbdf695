public import Foundation

/// The metric names the Grafana dashboard in `docs/grafana/arbiter.json` queries (histogram series
/// reduced to their family: `_bucket` dropped), for tests that check each against a real exposition.
///
/// - Throws: when the file is missing or is not a dashboard (JSON with panels whose targets have `expr`).
public func grafanaMetricNames(repositoryRoot root: URL) throws -> Set<String> {
    let data = try Data(contentsOf: root.appendingPathComponent("docs/grafana/arbiter.json"))
    guard let dashboard = try JSONSerialization.jsonObject(with: data) as? [String: Any],
          let panels = dashboard["panels"] as? [[String: Any]] else {
        throw HarnessError("docs/grafana/arbiter.json is not a dashboard with panels")
    }
    let regex = try NSRegularExpression(pattern: "arbiter_[a-z_]+")
    var names = Set<String>()
    for panel in panels {
        for target in panel["targets"] as? [[String: Any]] ?? [] {
            guard let expression = target["expr"] as? String else {
                throw HarnessError("a target of panel \(panel["title"] ?? "?") has no expr")
            }
            for match in regex.matches(in: expression, range: NSRange(expression.startIndex..., in: expression)) {
                var name = String(expression[Range(match.range, in: expression)!])
                if name.hasSuffix("_bucket") { name.removeLast("_bucket".count) }
                names.insert(name)
            }
        }
    }
    return names
}
