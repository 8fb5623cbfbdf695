import Foundation
import Testing

/// docs/participant-guide.md quotes the bank's sources; every block marked
/// `<!-- from: PATH -->` must still appear verbatim in PATH, so the guide cannot drift from the
/// code that compiles.
@Suite("Participant guide")
struct GuideTests {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test("every quoted block matches its source file")
    func quotesMatchSources() throws {
        let guide = try String(contentsOf: Self.root.appendingPathComponent("docs/participant-guide.md"), encoding: .utf8)
        let lines = guide.components(separatedBy: "\n")
        var quotes: [(path: String, code: String)] = []
        var index = 0
        while index < lines.count {
            let line = lines[index].trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("<!-- from: "), line.hasSuffix(" -->") {
                let path = String(line.dropFirst("<!-- from: ".count).dropLast(" -->".count))
                index += 1
                #expect(lines[index] == "```swift", "the block after \(path)'s marker must be a swift fence")
                var code: [String] = []
                index += 1
                while index < lines.count, lines[index] != "```" {
                    code.append(lines[index])
                    index += 1
                }
                quotes.append((path, code.joined(separator: "\n")))
            }
            index += 1
        }
        #expect(quotes.count >= 6)
        for quote in quotes {
            let source = try String(contentsOf: Self.root.appendingPathComponent(quote.path), encoding: .utf8)
            #expect(source.contains(quote.code), "docs/participant-guide.md quotes \(quote.path) but the code changed:\n\(quote.code)")
        }
    }
}
