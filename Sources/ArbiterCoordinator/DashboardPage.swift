/// The dashboard's HTML, CSS and JavaScript, served from the binary (no build step, no resource
/// bundle). The page polls `GET /dashboard/api/summary` every 2 s with its session cookie and
/// posts retries with the session's CSRF token.
enum DashboardPage {
    static let style = #"""
    <style>
    :root { --bg:#0f1419; --panel:#1a2129; --text:#d8dee6; --muted:#8a96a3; --ok:#3fb950; --bad:#f85149; --warn:#d29922; --accent:#58a6ff; }
    * { box-sizing: border-box; }
    body { margin:0; font:14px/1.4 system-ui, sans-serif; background:var(--bg); color:var(--text); }
    header { display:flex; justify-content:space-between; align-items:center; padding:10px 20px; background:var(--panel); border-bottom:1px solid #2b3540; }
    h1 { font-size:18px; margin:0; } h2 { font-size:14px; margin:0 0 8px; color:var(--muted); text-transform:uppercase; letter-spacing:.05em; }
    main { display:grid; grid-template-columns: 1fr 1fr; gap:14px; padding:14px 20px; }
    section { background:var(--panel); border:1px solid #2b3540; border-radius:6px; padding:12px; }
    .wide { grid-column: 1 / 3; }
    .counts { display:flex; gap:10px; }
    .count { flex:1; padding:8px; border-radius:4px; background:#222b35; text-align:center; }
    .count b { display:block; font-size:24px; }
    table { width:100%; border-collapse:collapse; font-size:13px; }
    th, td { text-align:left; padding:4px 6px; border-bottom:1px solid #2b3540; } th { color:var(--muted); font-weight:normal; }
    .owing { color:var(--warn); } .down { color:var(--bad); } .up { color:var(--ok); }
    button { background:#238636; color:white; border:0; border-radius:4px; padding:3px 10px; cursor:pointer; }
    canvas { width:100%; height:120px; background:#131a21; border-radius:4px; }
    form.login { max-width:360px; margin:80px auto; background:var(--panel); padding:24px; border-radius:6px; }
    input { width:100%; padding:6px; margin:8px 0; background:#0f1419; color:var(--text); border:1px solid #2b3540; border-radius:4px; }
    .empty { color:var(--muted); }
    </style>
    """#

    /// The login form; `message` says why the last try failed.
    static func login(message: String?) -> String {
        let note = message.map { "<p class=\"down\">\(escape($0))</p>" } ?? ""
        return """
        <!doctype html><html lang="en"><head><meta charset="utf-8"><title>Arbiter — log in</title>\(style)</head>
        <body><form class="login" method="post" action="/dashboard/login">
        <h1>Arbiter coordinator</h1>\(note)
        <label>Operator token<input type="password" name="token" autocomplete="off" autofocus></label>
        <button type="submit">Log in</button>
        <p class="empty">The token is checked once; the browser keeps only a session cookie.</p>
        </form></body></html>
        """
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static let page = """
    <!doctype html><html lang="en"><head><meta charset="utf-8"><title>Arbiter dashboard</title>\(style)</head>
    <body>
    <header><h1>Arbiter coordinator</h1><span id="updated" class="empty">loading…</span>
    <form method="post" action="/dashboard/logout"><button type="submit">Log out</button></form></header>
    <main>
    <section class="wide"><h2>Transactions by state</h2><div class="counts" id="counts"></div></section>
    <section><h2>Throughput (per second, last 2 minutes)</h2><canvas id="throughput" width="600" height="120"></canvas><div id="throughputText" class="empty"></div></section>
    <section><h2>Latency (mean ms to completion)</h2><canvas id="latency" width="600" height="120"></canvas><div id="latencyText" class="empty"></div></section>
    <section class="wide"><h2>Stuck (oldest first)</h2><table><thead><tr><th>Transaction</th><th>State</th><th>Age</th><th>Awaiting</th><th>Owed by</th><th></th></tr></thead><tbody id="stuck"></tbody></table></section>
    <section><h2>Participants</h2><table><thead><tr><th>Name</th><th>URL</th><th>Outstanding</th><th>Owed acks</th><th>Reachable</th></tr></thead><tbody id="participants"></tbody></table></section>
    <section><h2>Recent operator actions</h2><table><thead><tr><th>When</th><th>Who</th><th>What</th><th>Transaction</th><th>Reason</th><th>Result</th></tr></thead><tbody id="audit"></tbody></table></section>
    </main>
    <script>\(script)</script>
    </body></html>
    """

    static let script = #"""
    "use strict";
    let csrf = null;
    const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;","\"":"&quot;"}[c]));
    function rows(id, items, render, empty) {
      document.getElementById(id).innerHTML = items.length ? items.map(render).join("") : `<tr><td colspan="6" class="empty">${empty}</td></tr>`;
    }
    function chart(id, series, colors) {
      const c = document.getElementById(id), g = c.getContext("2d");
      g.clearRect(0, 0, c.width, c.height);
      const max = Math.max(1, ...series.flat().filter(v => v != null));
      series.forEach((values, k) => {
        g.strokeStyle = colors[k]; g.lineWidth = 2; g.beginPath();
        values.forEach((v, i) => { const x = i * c.width / Math.max(1, values.length - 1), y = c.height - 4 - (v ?? 0) * (c.height - 8) / max; i ? g.lineTo(x, y) : g.moveTo(x, y); });
        g.stroke();
      });
    }
    function age(ms) { const s = Math.floor(ms / 1000); return s < 120 ? s + " s" : Math.floor(s / 60) + " min"; }
    async function refresh() {
      let response;
      try { response = await fetch("/dashboard/api/summary", {credentials: "same-origin"}); } catch (e) { document.getElementById("updated").textContent = "coordinator unreachable"; return; }
      if (response.status === 401) { location.reload(); return; }
      const s = await response.json();
      csrf = s.csrf;
      const c = s.counts;
      document.getElementById("counts").innerHTML = [["preparing", c.preparing], ["committing", c.committing], ["aborting", c.aborting], ["committed (since start)", c.committed], ["aborted (since start)", c.aborted]]
        .map(([k, v]) => `<div class="count" data-state="${k.split(" ")[0]}"><b>${v}</b>${k}</div>`).join("");
      const committed = s.seconds.map(x => x.committed), aborted = s.seconds.map(x => x.aborted), latency = s.seconds.map(x => x.latencyMs);
      chart("throughput", [committed, aborted], ["#3fb950", "#f85149"]);
      chart("latency", [latency], ["#58a6ff"]);
      const sum = a => a.reduce((x, y) => x + y, 0), last = s.seconds.slice(-60);
      document.getElementById("throughputText").textContent = `last minute: ${sum(last.map(x => x.committed))} committed, ${sum(last.map(x => x.aborted))} aborted`;
      const lat = last.filter(x => x.latencyMs != null).map(x => x.latencyMs);
      document.getElementById("latencyText").textContent = lat.length ? `last minute: mean ${(sum(lat) / lat.length).toFixed(1)} ms` : "no transactions finished in the last minute";
      rows("stuck", s.stuck, t => `<tr class="stuck-row" data-id="${esc(t.id)}"><td>${esc(t.id)}</td><td>${esc(t.state)}</td><td>${age(t.ageMs)}</td><td>${esc(t.awaiting)}</td><td class="owing">${t.owing.map(esc).join(", ")}</td><td>${t.state === "preparing" ? "" : `<button data-retry="${esc(t.id)}">retry now</button>`}</td></tr>`, "nothing stuck");
      rows("participants", s.participants, p => `<tr><td>${esc(p.name)}</td><td>${esc(p.url)}</td><td>${p.outstandingMessages}</td><td>${p.owedAcknowledgements}</td><td class="${p.unreachableSeconds > 0 ? "down" : "up"}">${p.unreachableSeconds > 0 ? "unreachable for " + p.unreachableSeconds + " s" : "yes"}</td></tr>`, "no registered participants");
      rows("audit", s.audit, a => `<tr><td>${esc(a.at)}</td><td>${esc(a.actor)}</td><td>${esc(a.action)}</td><td>${esc(a.txid)}</td><td>${esc(a.reason)}</td><td>${esc(a.result ?? "(no result)")}</td></tr>`, "no operator actions yet");
      document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    }
    document.addEventListener("click", async event => {
      const id = event.target.dataset && event.target.dataset.retry;
      if (!id) return;
      const reason = prompt(`Resend the decision of ${id} now to the participants that owe it. Reason (kept in the audit trail):`);
      if (!reason) return;
      const response = await fetch(`/v1/operator/transactions/${encodeURIComponent(id)}/retry`, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}, body: JSON.stringify({reason})});
      const body = await response.json();
      alert(response.ok ? `resent to ${body.resentTo.join(", ")}` : body.error.message);
      refresh();
    });
    refresh();
    setInterval(refresh, 2000);
    """#
}
