import Foundation
public import HTTPTypes
public import Hummingbird
import NIOCore

/// What every dashboard page is made of: the style sheet, the login form, the small script
/// helpers, HTML escaping, and the response that serves a page (no build step, no resource bundle).
public enum DashboardHTML {
    /// The style sheet every page and the login form share; a page adds its own rules after it.
    public static let style = #"""
    <style>
    :root { --bg:#0f1419; --panel:#1a2129; --text:#d8dee6; --muted:#8a96a3; --ok:#3fb950; --bad:#f85149; --warn:#d29922; --accent:#58a6ff; }
    * { box-sizing: border-box; }
    body { margin:0; font:14px/1.4 system-ui, sans-serif; background:var(--bg); color:var(--text); }
    header { display:flex; justify-content:space-between; align-items:center; padding:10px 20px; background:var(--panel); border-bottom:1px solid #2b3540; }
    h1 { font-size:18px; margin:0; } h2 { font-size:14px; margin:0 0 8px; color:var(--muted); text-transform:uppercase; letter-spacing:.05em; }
    main { display:grid; grid-template-columns: 1fr 1fr; gap:14px; padding:14px 20px; }
    section { background:var(--panel); border:1px solid #2b3540; border-radius:6px; padding:12px; }
    .wide { grid-column: 1 / 3; }
    table { width:100%; border-collapse:collapse; font-size:13px; }
    th, td { text-align:left; padding:4px 6px; border-bottom:1px solid #2b3540; } th { color:var(--muted); font-weight:normal; }
    .owing { color:var(--warn); } .down { color:var(--bad); } .up { color:var(--ok); }
    button { background:#238636; color:white; border:0; border-radius:4px; padding:3px 10px; cursor:pointer; }
    form.login { max-width:360px; margin:80px auto; background:var(--panel); padding:24px; border-radius:6px; }
    input { width:100%; padding:6px; margin:8px 0; background:#0f1419; color:var(--text); border:1px solid #2b3540; border-radius:4px; }
    .empty { color:var(--muted); }
    </style>
    """#

    /// The login form of the dashboard of `service` ("Arbiter coordinator"); `message` says why the
    /// last try failed.
    public static func login(service: String, message: String?) -> String {
        let note = message.map { "<p class=\"down\">\(escape($0))</p>" } ?? ""
        return """
        <!doctype html><html lang="en"><head><meta charset="utf-8"><title>Arbiter — log in</title>\(style)</head>
        <body><form class="login" method="post" action="/dashboard/login">
        <h1>\(escape(service))</h1>\(note)
        <label>Operator token<input type="password" name="token" autocomplete="off" autofocus></label>
        <button type="submit">Log in</button>
        <p class="empty">The token is checked once; the browser keeps only a session cookie.</p>
        </form></body></html>
        """
    }

    /// JavaScript helpers for a page's script: `esc(s)` escapes text for HTML; `rows(id, items,
    /// render, empty)` fills the table body `id` with a row per item, or one row saying `empty`
    /// across the table's columns; `age(ms)` reads a duration as seconds or minutes.
    ///
    /// `rows` leaves its table as it is while a pointer is pressed (the next poll redraws it): a
    /// button in a row rebuilt between the press and the release would be replaced, and the click
    /// would do nothing.
    public static let scriptHelpers = #"""
    const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;","\"":"&quot;"}[c]));
    let pressed = false;
    document.addEventListener("pointerdown", () => { pressed = true; }, true);
    // Cleared after the click that follows the release has been dispatched.
    document.addEventListener("pointerup", () => { setTimeout(() => { pressed = false; }, 0); }, true);
    document.addEventListener("pointercancel", () => { pressed = false; }, true);
    window.addEventListener("blur", () => { pressed = false; });
    function rows(id, items, render, empty) {
      if (pressed) return;
      const body = document.getElementById(id), columns = body.closest("table").querySelectorAll("thead th").length;
      body.innerHTML = items.length ? items.map(render).join("") : `<tr><td colspan="${columns}" class="empty">${empty}</td></tr>`;
    }
    function age(ms) { const s = Math.floor(ms / 1000); return s < 120 ? s + " s" : Math.floor(s / 60) + " min"; }
    """#

    /// `text` with `&`, `<`, `>` and `"` escaped, for HTML text and attribute values.
    public static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    /// A page: not cached, with a Content-Security-Policy that allows only the page's own inline
    /// script and style and same-origin requests, and no framing.
    public static func response(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [
            .contentType: "text/html; charset=utf-8", .cacheControl: "no-store",
            .contentSecurityPolicy: "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    /// A JSON value for a page's script, not cached (it holds the session's CSRF token).
    public static func json(_ value: some Encodable) throws -> Response {
        var response = try WireResponse.json(value)
        response.headers[.cacheControl] = "no-store"
        return response
    }

    /// `application/x-www-form-urlencoded` fields.
    public static func formFields(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" }
            if parts.count == 2 { fields[parts[0]] = parts[1] }
        }
        return fields
    }
}
