// One patient for a whole visit (issue 26): the photographs of a visit no patient card names
// wait with one message that names the visit; a Patient ID typed once is saved for all of them
// (/api/visit); so is one for the files ticked in the list (Shift+click ticks a run). Uses
// page.js's items, values, current, selected, show, previewUrl, status, markListItem,
// showDecidedNote and updateCounts. Beside the picture, the visit's records grid.
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

  // The 3x3 records grid a clinician knows (records-default.toml's views): each cell shows the
  // visit's photograph of that view, or its name where it is missing; the middle, the others.
  const GRID = [
    ["right profile", ["EV01", "EV02", "EV03", "EV04", "EV05", "EV06"]],
    ["frontal at rest", ["EV15", "EV17"]],
    ["frontal smiling", ["EV19"]],
    ["upper occlusal", ["IV24", "IV25"]],
    ["other", null],
    ["lower occlusal", ["IV26", "IV27"]],
    ["right buccal", ["IV01", "IV02", "IV03", "IV04", "IV05", "IV06"]],
    ["intraoral frontal", ["IV07", "IV08"]],
    ["left buccal", ["IV18", "IV19", "IV20", "IV21", "IV22", "IV23"]],
  ];

  function renderGrid(members) {
    const grid = document.getElementById("visit-grid");
    grid.hidden = !members.length;
    grid.textContent = "";
    const placed = new Set();
    const cells = GRID.map(([name, codes]) => {
      const td = document.createElement("td");
      td.dataset.view = name;
      const hits = codes ? members.filter((m) => codes.includes((values[m.id].protocol || "").toUpperCase())) : [];
      hits.forEach((m) => placed.add(m.id));
      if (hits.length) {
        const img = document.createElement("img");
        img.src = previewUrl(hits[0].id, "thumb");
        img.alt = name;
        img.title = `${name}: ${hits.map((m) => m.rel).join(", ")}`;
        img.addEventListener("click", () => show(hits[0].id));
        td.append(img);
      } else if (codes) {
        td.className = "missing";
        td.textContent = name;
        td.title = `${name}: missing`;
      }
      return td;
    });
    const others = members.length - placed.size;
    cells[4].textContent = others ? `${others} other` : "";
    for (let r = 0; r < 3; r++) {
      const tr = document.createElement("tr");
      tr.append(...cells.slice(3 * r, 3 * r + 3));
      grid.append(tr);
    }
  }

  function render() {
    const it = items[current];
    const members = visitOf(it);
    panel.hidden = !members.length;
    renderGrid(members);
    if (!members.length) return;
    const named = it.decision && it.decision.patient_id;
    document.getElementById("visit-count").textContent = named
      ? `this visit (${members.length} file(s)) is ${it.decision.patient_id}'s; change it:`
      : `Patient of this whole visit (${members.length} file(s)):`;
  }

  // The visit of the file shown, or (`run`) the files ticked in the list: one patient for all.
  async function name(run) {
    const input = document.getElementById(run ? "bulk-patient" : "visit-patient");
    const body = run ? { ids: [...selected], patient_id: input.value }
      : { id: items[current].id, patient_id: input.value };
    try {
      const resp = await fetch("/api/visit", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Orthovision-Token": token },
        body: JSON.stringify(body),
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
      status(`${run ? "patient of the selected" : "visit named"} ${input.value.trim()}: ${data.saved.length} file(s)`);
      updateCounts();
      showDecidedNote();
      render();
    } catch (err) {
      status(`not saved: ${err}`, true);
    }
  }

  document.getElementById("visit-name").addEventListener("click", () => name(false));
  document.getElementById("bulk-patient-apply").addEventListener("click", () => name(true));
  for (const [field, run] of [["visit-patient", false], ["bulk-patient", true]]) {
    document.getElementById(field).addEventListener("keydown", (ev) => {
      ev.stopPropagation();  // typing an ID is not a page shortcut
      if (ev.key === "Enter") { ev.preventDefault(); name(run); }
    });
  }
  document.addEventListener("shown", render);
})();
