// One patient for a whole visit (issue 26): the photographs of a visit no patient card names
// wait with one message that names the visit; a Patient ID typed once is saved for all of them
// (/api/visit). Uses page.js's items, current, status, markListItem and updateCounts.
"use strict";

(() => {
  const panel = document.getElementById("visit");
  const token = document.querySelector('meta[name="orthovision-token"]').content;
  const REASONS = ["visit-without-patient", "patient-card-conflict"];
  const folder = (p) => p.slice(0, p.lastIndexOf("/"));

  function visitOf(it) {
    if (!it || !REASONS.includes(it.reason)) return [];
    return items.filter((o) => o.reason === it.reason && o.message === it.message
      && folder(o.input) === folder(it.input));
  }

  function render() {
    const it = items[current];
    const members = visitOf(it);
    panel.hidden = !members.length;
    if (!members.length) return;
    const named = it.decision && it.decision.patient_id;
    document.getElementById("visit-count").textContent = named
      ? `this visit (${members.length} file(s)) is ${it.decision.patient_id}'s; change it:`
      : `Patient of this whole visit (${members.length} file(s)):`;
  }

  async function name() {
    const it = items[current];
    const input = document.getElementById("visit-patient");
    try {
      const resp = await fetch("/api/visit", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Orthovision-Token": token },
        body: JSON.stringify({ id: it.id, patient_id: input.value }),
      });
      const data = await resp.json();
      if (!resp.ok) { status(`not saved: ${data.error}`, true); return; }
      for (const d of data.saved) {
        const id = items.findIndex((o) => o.input === d.input);
        if (id < 0) continue;
        items[id].decision = d;
        items[id].stale = false;
        markListItem(id);
      }
      status(`visit named ${input.value.trim()}: ${data.saved.length} file(s)`);
      updateCounts();
      showDecidedNote();
      render();
    } catch (err) {
      status(`not saved: ${err}`, true);
    }
  }

  document.getElementById("visit-name").addEventListener("click", name);
  document.getElementById("visit-patient").addEventListener("keydown", (ev) => {
    ev.stopPropagation();  // typing an ID is not a page shortcut
    if (ev.key === "Enter") { ev.preventDefault(); name(); }
  });
  document.addEventListener("shown", render);
})();
