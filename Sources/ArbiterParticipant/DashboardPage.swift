import ArbiterHTTP

/// The participant's dashboard page: HTML, CSS and JavaScript served from the binary (no build
/// step, no resource bundle). It polls `GET /dashboard/api/summary` every 2 s with its session
/// cookie and decides through `POST /v1/operator/transactions/{txid}/decide` with the session's
/// CSRF token, after the operator has picked an outcome, given a reason, ticked "I understand this
/// may break atomicity" and confirmed.
enum ParticipantDashboardPage {
    static let style = DashboardHTML.style + #"""
    <style>
    .warning { border-left:3px solid var(--warn); padding:6px 10px; margin:0 0 10px; background:#2a2417; }
    .split { display:grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap:20px; align-items:start; }
    .facts { display:grid; grid-template-columns: max-content 1fr; gap:2px 12px; margin:0 0 10px; }
    .facts dt { color:var(--muted); } .facts dd { margin:0; }
    fieldset { border:1px solid #2b3540; border-radius:4px; margin:0 0 10px; padding:6px 10px; }
    label.choice { margin-right:18px; } label.choice input, label.tick input { width:auto; margin:0 6px 0 0; }
    .confirm { border:1px solid var(--bad); border-radius:4px; padding:8px 10px; margin:10px 0 0; }
    button.danger { background:#b62324; } button.plain { background:#30363d; }
    .payload { font-family:ui-monospace, monospace; font-size:12px; word-break:break-all; }
    .result { margin:10px 0 0; }
    </style>
    """#

    static let page = """
    <!doctype html><html lang="en"><head><meta charset="utf-8"><title>Arbiter participant</title>\(style)</head>
    <body>
    <header><h1>Arbiter participant</h1><span id="updated" class="empty">loading…</span>
    <form method="post" action="/dashboard/logout"><button type="submit">Log out</button></form></header>
    <main>
    <section class="wide"><h2>In doubt (prepared, oldest first)</h2><p id="inDoubtCount" class="empty"></p>
    <table><thead><tr><th>Transaction</th><th>Coordinator</th><th>Age</th><th>Payload</th><th>Locks</th><th>Coordinator's last answer</th><th></th></tr></thead><tbody id="indoubt"></tbody></table></section>
    <section class="wide" id="decision" hidden><h2>Heuristic decision</h2>
    <p class="warning">Deciding here, without the coordinator, may break atomicity: if the coordinator decided the other way,
    this participant disagrees with the others for good. Decide only when the coordinator is lost for longer than the locks
    can be held, and reconcile by hand afterwards.</p>
    <div class="split"><dl class="facts" id="decision-facts"></dl>
    <div><div id="decision-form">
    <fieldset><legend>Outcome</legend>
    <label class="choice"><input type="radio" name="outcome" value="committed">commit</label>
    <label class="choice"><input type="radio" name="outcome" value="aborted">abort</label></fieldset>
    <label>Reason (kept in the audit trail)<input type="text" id="reason" maxlength="1000" autocomplete="off"></label>
    <label class="tick"><input type="checkbox" id="understand">I understand this may break atomicity</label>
    <p><button type="button" id="decide" class="danger">Decide…</button></p>
    <p id="decision-error" class="down"></p>
    <div id="confirm" class="confirm" hidden><p id="confirm-text"></p>
    <button type="button" id="confirm-button" class="danger">Confirm</button> <button type="button" id="cancel-button" class="plain">Cancel</button></div>
    </div>
    <p id="decision-result" class="result"></p>
    <p><button type="button" id="close" class="plain">Close</button></p></div></div>
    </section>
    <section class="wide"><h2>Recent operator actions</h2><table><thead><tr><th>When</th><th>Who</th><th>What</th><th>Transaction</th><th>Reason</th><th>Result</th></tr></thead><tbody id="audit"></tbody></table></section>
    </main>
    <script>\(script)</script>
    </body></html>
    """

    static let script = #"""
    "use strict";
    let csrf = null, inDoubt = [], chosen = null, confirmed = null;
    \#(DashboardHTML.scriptHelpers)
    const $ = id => document.getElementById(id);
    function locks(list) { return list.length <= 5 ? list.join(", ") : list.slice(0, 5).join(", ") + ` and ${list.length - 5} more`; }
    function answer(t) {
      const q = t.lastInquiry;
      if (!q) return `<span class="empty">no inquiry has ended since this node started</span>`;
      const when = `${age(q.ageMs)} ago`;
      return q.error ? `<span class="down">no answer: ${esc(q.error)} (${when})</span>` : `<span class="owing">${esc(q.answer)}: not decided yet (${when})</span>`;
    }
    function facts(t) {
      if (!t) return `<dt>Transaction</dt><dd>${esc(chosen)}</dd><dt>State</dt><dd class="down">no longer in doubt here (see the audit trail, or its coordinator may have answered)</dd>`;
      return `<dt>Transaction</dt><dd>${esc(t.txid)}</dd><dt>Coordinator</dt><dd>${esc(t.coordinator)}</dd>` +
        `<dt>In doubt for</dt><dd>${t.ageMs == null ? "?" : age(t.ageMs)}</dd><dt>Locks</dt><dd>${esc(locks(t.locks)) || "none"}</dd>` +
        `<dt>Payload</dt><dd class="payload">${esc(t.payload)}</dd><dt>Coordinator's last answer</dt><dd>${answer(t)}</dd>`;
    }
    async function refresh() {
      let response;
      try { response = await fetch("/dashboard/api/summary", {credentials: "same-origin"}); } catch (e) { $("updated").textContent = "participant unreachable"; return; }
      if (response.status === 401) { location.reload(); return; }
      const s = await response.json();
      csrf = s.csrf;
      inDoubt = s.inDoubt;
      $("inDoubtCount").textContent = s.inDoubtCount === s.inDoubt.length ? `${s.inDoubtCount} in doubt` : `${s.inDoubtCount} in doubt; the oldest ${s.inDoubt.length} shown`;
      rows("indoubt", s.inDoubt, t => `<tr class="indoubt-row" data-txid="${esc(t.txid)}"><td>${esc(t.txid)}</td><td>${esc(t.coordinator)}</td><td>${t.ageMs == null ? "?" : age(t.ageMs)}</td>` +
        `<td class="payload">${esc(t.payload)}</td><td>${esc(locks(t.locks))}</td><td>${answer(t)}</td><td><button data-decide="${esc(t.txid)}">decide…</button></td></tr>`, "nothing in doubt");
      rows("audit", s.audit, a => `<tr><td>${esc(a.at)}</td><td>${esc(a.actor)}</td><td>${esc(a.action)}</td><td>${esc(a.txid)}</td><td>${esc(a.reason)}</td><td>${esc(a.result ?? "(no result)")}</td></tr>`, "no operator actions yet");
      if (chosen && !$("decision-result").textContent) $("decision-facts").innerHTML = facts(inDoubt.find(t => t.txid === chosen));
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    }
    function choose(txid) {
      chosen = txid; confirmed = null;
      document.querySelectorAll("input[name=outcome]").forEach(r => { r.checked = false; });
      $("reason").value = ""; $("understand").checked = false;
      $("decision-error").textContent = ""; $("decision-result").textContent = "";
      unconfirm(); $("decision-form").hidden = false; $("decision").hidden = false;
      $("decision-facts").innerHTML = facts(inDoubt.find(t => t.txid === txid));
      $("decision").scrollIntoView();
    }
    function outcome() { const r = document.querySelector("input[name=outcome]:checked"); return r ? r.value : null; }
    // The guard: nothing is sent without an outcome, a reason, the tick, and a confirmation.
    function check() {
      const missing = [];
      if (!outcome()) missing.push("pick commit or abort");
      if (!$("reason").value.trim()) missing.push("give a reason");
      if (!$("understand").checked) missing.push("tick \u201cI understand this may break atomicity\u201d");
      $("decision-error").textContent = missing.length ? "Not sent: " + missing.join(", ") + "." : "";
      if (missing.length) { unconfirm(); return; }
      confirmed = {txid: chosen, outcome: outcome(), reason: $("reason").value};
      $("confirm-text").textContent = `${confirmed.outcome === "committed" ? "Commit" : "Abort"} ${confirmed.txid} here, without its coordinator? This cannot be undone.`;
      $("confirm").hidden = false;
    }
    // Any change after "Decide…" needs a new confirmation.
    function unconfirm() { confirmed = null; $("confirm").hidden = true; }
    async function send() {
      if (!confirmed) return;
      const {txid, outcome, reason} = confirmed;
      unconfirm();
      const body = {outcome, iUnderstandThisMayBreakAtomicity: $("understand").checked, reason};
      let response, reply;
      try {
        response = await fetch(`/v1/operator/transactions/${encodeURIComponent(txid)}/decide`, {
          method: "POST", credentials: "same-origin", headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}, body: JSON.stringify(body)});
        reply = await response.json();
      } catch (e) { $("decision-error").textContent = "Not known whether it was decided: the participant did not answer. Look again before retrying."; return; }
      if (response.ok) {
        $("decision-form").hidden = true; $("decision-error").textContent = "";
        $("decision-result").className = "result up";
        $("decision-result").textContent = `${reply.txid} is now ${reply.state} here${reply.heuristic ? ", recorded as a heuristic decision" : ""}. The audit trail below has the entry.`;
      } else {
        $("decision-error").textContent = `Refused (HTTP ${response.status}): ${reply.error ? reply.error.message : response.statusText}`;
      }
      refresh();
    }
    document.addEventListener("click", event => {
      const txid = event.target.dataset && event.target.dataset.decide;
      if (txid) choose(txid);
    });
    $("decide").addEventListener("click", check);
    $("confirm-button").addEventListener("click", send);
    $("cancel-button").addEventListener("click", unconfirm);
    document.querySelectorAll("#decision-form input").forEach(input => input.addEventListener("input", unconfirm));
    $("close").addEventListener("click", () => { unconfirm(); $("decision").hidden = true; chosen = null; });
    refresh();
    setInterval(refresh, 2000);
    """#
}
