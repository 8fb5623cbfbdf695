import ArbiterHTTP

/// The dashboard's HTML, CSS and JavaScript, served from the binary (no build step, no resource
/// bundle). The page polls `GET /dashboard/api/summary` every 2 s with its session cookie and
/// posts retries with the session's CSRF token.
enum DashboardPage {
    /// The coordinator's rules after the shared style sheet: the counts and the charts.
    static let style = DashboardHTML.style + #"""
    <style>
    .counts { display:flex; gap:10px; }
    .count { flex:1; padding:8px; border-radius:4px; background:#222b35; text-align:center; }
    .count b { display:block; font-size:24px; }
    canvas { width:100%; height:120px; background:#131a21; border-radius:4px; }
    </style>
    """#

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
    \#(DashboardHTML.scriptHelpers)
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
