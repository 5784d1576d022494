// The review page: one list of files awaiting review, one file in detail, decisions saved at
// once. No framework, no network beyond this page's own server.
"use strict";

const TAGS = ["modality", "protocol", "body_part", "orientation"];
const TAG_NAMES = { modality: "Modality", protocol: "View / protocol", body_part: "Body part", orientation: "Orientation" };
const TOKEN = document.querySelector('meta[name="orthovision-token"]').content;
// Opened by the address with the token: the cookie now holds it, the address bar need not.
if (new URLSearchParams(location.search).has("token")) history.replaceState(null, "", "/");
const $ = (id) => document.getElementById(id);
// Every request carries the page's token (the server may ask for it on any route).
const api = (url) => fetch(url, { headers: { "X-Orthovision-Token": TOKEN } });

let items = [];          // from /api/items
let codes = {};          // from /api/codes
let values = {};         // id -> {modality, protocol, body_part, orientation}: what is shown
const touched = {};      // id -> Set of tags the person changed here (recorded even when unknown)
let shown = [];          // ids passing the filter, in list order
let current = -1;        // id of the file in detail
const selected = new Set();
let lastTicked = -1;     // the file last ticked in the list (Shift+click ticks a run from it)

function parseOrientation(text) {
  const m = /^(0|90|180|270)?(\+?flip)?$/.exec((text || "0").trim());
  return m ? { rotate: parseInt(m[1] || "0", 10), flip: !!m[2] } : { rotate: 0, flip: false };
}
function formatOrientation(o) { return `${o.rotate}${o.flip ? "+flip" : ""}`; }
// The orientation label: rotate the stored pixels clockwise, then mirror left-right.
// CSS applies the rightmost transform first.
function cssTransform(text) {
  const o = parseOrientation(text);
  return `${o.flip ? "scaleX(-1) " : ""}rotate(${o.rotate}deg)`;
}

function proposedValues(it) {
  const v = {};
  for (const t of TAGS) {
    const lab = it.labels ? it.labels[t] : null;
    v[t] = lab && lab.value ? String(lab.value) : "";
  }
  // An unknown orientation stays unknown (shown as stored): never a 0 nobody chose.
  return v;
}
// What is shown: the person's decided tags over the proposed values of the others.
function shownValues(it) {
  const v = proposedValues(it);
  if (it.decision) for (const t of it.decision.decided_tags || TAGS) v[t] = it.decision[t] || "";
  return v;
}

function choices(tag) {
  if (tag === "protocol") {
    return [
      { group: "ADA-1100 views", options: codes.views },
      { group: "Radiograph protocols", options: codes.radiograph_protocols },
    ];
  }
  return [{ group: null, options: codes[tag] }];
}

function fillSelect(sel, tag, value) {
  sel.textContent = "";
  sel.append(new Option("(unknown)", ""));
  let found = value === "";
  for (const g of choices(tag)) {
    const parent = g.group ? document.createElement("optgroup") : sel;
    if (g.group) { parent.label = g.group; sel.append(parent); }
    for (const c of g.options) {
      const label = tag === "orientation" ? c.meaning : `${c.value} — ${c.meaning}`;
      parent.append(new Option(label, c.value));
      if (c.value === value) found = true;
    }
  }
  if (!found && value) sel.append(new Option(`${value} (as proposed)`, value));
  sel.value = value;
}

function status(text, isError) {
  const s = $("saved");
  s.textContent = text;
  s.classList.toggle("error", !!isError);
}

// Saves go one at a time, in order, each with the values shown when it is sent: the last
// change a person made is the one on disk.
let queue = Promise.resolve(true);
let saving = 0;          // saves of this page on their way (polls wait for them)
let saveGen = 0;         // counts saves: a poll that overlapped one is dropped
// `tags`: the tags the person set or confirmed, the only ones recorded (issue 21): an array
// for all `ids`, or a function of the id.
function save(ids, tags) {
  saving++;
  saveGen++;
  const next = queue.then(() => send(ids, tags)).finally(() => { saving--; });
  queue = next.catch(() => false);
  return next;
}

async function send(ids, tags) {
  const decisions = [];
  for (const id of ids) {
    const d = { input: items[id].input };
    for (const t of (typeof tags === "function" ? tags(id) : tags)) d[t] = values[id][t];
    if (Object.keys(d).length > 1) decisions.push(d);
  }
  if (!decisions.length) { status("nothing to record: no value shown or chosen"); return true; }
  const body = { decisions };
  try {
    const resp = await fetch("/api/decide", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Orthovision-Token": TOKEN },
      body: JSON.stringify(body),
    });
    const data = await resp.json();
    if (!resp.ok) { status(`not saved: ${data.error}`, true); return false; }
    for (const d of data.saved) {
      const id = items.findIndex((it) => it.input === d.input);
      if (id < 0) continue;
      items[id].decision = d;
      items[id].stale = false;
      markListItem(id);
    }
    status(`saved ${data.saved.length} decision(s) ${new Date().toLocaleTimeString()}`);
    if (ids.includes(current)) showDecidedNote();
    updateCounts();
    return true;
  } catch (err) {
    status(`not saved: ${err}`, true);
    return false;
  }
}

function markListItem(id, li = document.querySelector(`#list li[data-id="${id}"]`)) {
  if (!li) return;
  const d = items[id].decision;
  li.classList.toggle("decided", !!d);
  li.title = d ? `decided: ${(d.decided_tags || TAGS).join(", ")}` : "";
  li.classList.toggle("stale", !!items[id].stale);
  li.classList.toggle("current", id === current);
  li.querySelector("input").checked = selected.has(id);
}

function updateCounts() {
  const settled = items.filter((it) => it.settled).length;
  const decided = items.filter((it) => it.decision).length;
  const open = items.length - settled;
  // Unambiguous: the decided are part of the files listed, not beside them.
  $("counts").textContent = `${open} file(s) listed: ${open - decided} to decide, ${decided} decided`;
}

function filterOptions() {
  const sel = $("filter");
  const opts = [["all", "all files"], ["undecided", "undecided"], ["decided", "decided"],
    ["settled", "no longer need you (taught)"]];
  for (const r of [...new Set(items.map((it) => it.reason))]) opts.push([`reason:${r}`, `reason: ${r}`]);
  for (const t of TAGS) {
    if (items.some((it) => it.uncertain.includes(t))) opts.push([`uncertain:${t}`, `uncertain: ${TAG_NAMES[t]}`]);
  }
  sel.textContent = "";
  for (const [v, l] of opts) sel.append(new Option(l, v));
}

function passes(it, f) {
  // Files the taught pack became sure of leave the list (still listed under their filter).
  if (f === "settled" || it.settled) return f === "settled" && it.settled;
  if (f === "all") return true;
  if (f === "undecided") return !it.decision;
  if (f === "decided") return !!it.decision;
  if (f.startsWith("reason:")) return it.reason === f.slice(7);
  if (f.startsWith("uncertain:")) return it.uncertain.includes(f.slice(10));
  return true;
}

function previewUrl(id, size) {
  return `/preview/${id}?sha=${items[id].sha256}&size=${size}`;
}

function renderList() {
  const f = $("filter").value || "all";
  shown = items.filter((it) => passes(it, f)).map((it) => it.id);
  // The file in detail first: its preview is asked for before any thumbnail.
  if (!shown.includes(current)) show(shown.length ? shown[0] : -1);
  const ul = $("list");
  ul.textContent = "";
  const frag = document.createDocumentFragment();
  for (const id of shown) {
    const it = items[id];
    const li = document.createElement("li");
    li.dataset.id = String(id);
    const box = document.createElement("input");
    box.type = "checkbox";
    box.title = "select (x)";
    box.addEventListener("click", (ev) => {
      ev.stopPropagation();
      // Shift: the run of shown files from the last one ticked to this one (one patient's photos).
      const from = shown.indexOf(lastTicked);
      if (ev.shiftKey && from >= 0) {
        const to = shown.indexOf(id);
        for (const other of shown.slice(Math.min(from, to), Math.max(from, to) + 1)) toggleSelect(other, box.checked);
      } else {
        toggleSelect(id, box.checked);
      }
      lastTicked = id;
    });
    const thumb = document.createElement("span");
    thumb.className = "thumb";
    const img = document.createElement("img");
    // Only thumbnails near the window are fetched; each is made on the server when asked.
    img.loading = "lazy";
    img.decoding = "async";
    img.fetchPriority = "low";
    img.alt = "";
    img.src = previewUrl(id, "thumb");
    img.style.transform = cssTransform(values[id].orientation);
    thumb.append(img);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = it.rel;
    li.append(box, thumb, name);
    li.addEventListener("click", () => show(id));
    markListItem(id, li);  // this row, not a search of the list per row
    frag.append(li);
  }
  ul.append(frag);
  const li = document.querySelector(`#list li[data-id="${current}"]`);
  if (li) li.scrollIntoView({ block: "nearest" });
}

function toggleSelect(id, on) {
  if (on) selected.add(id); else selected.delete(id);
  markListItem(id);
  $("bulk-set").hidden = selected.size === 0;
  $("bulk-count").textContent = `${selected.size} selected`;
}

function fmtConf(c) { return typeof c === "number" ? `${Math.round(c * 100)}%` : ""; }

function alternatives(lab) {
  if (!lab || !lab.detail) return "";
  const parts = [];
  for (const a of lab.detail.alternatives || []) parts.push(`${a.value} (${fmtConf(a.confidence)}, ${a.source})`);
  // A head's class probabilities (a radiograph's kind), and a face's smile probability: the
  // values a person weighs against the proposed one.
  const probs = lab.detail.probabilities;
  if (probs && typeof probs === "object" && !Array.isArray(probs)) {
    const top = Object.entries(probs).filter(([k]) => k !== lab.value && k !== lab.detail.kind)
      .sort((a, b) => b[1] - a[1]).slice(0, 3);
    for (const [k, s] of top) if (s >= 0.01) parts.push(`${k} (${fmtConf(s)})`);
  }
  const smile = lab.detail.smile_probability;
  if (typeof smile === "number") {
    if (lab.value === "EV15" || lab.value === "EV17") parts.push(`EV19 smiling (${fmtConf(smile)})`);
    else if (lab.value === "EV19") parts.push(`EV15 at rest (${fmtConf(1 - smile)})`);
  }
  const scores = lab.detail.scores;
  if (scores && typeof scores === "object" && !Array.isArray(scores)) {
    const top = Object.entries(scores).filter(([k]) => k !== lab.value)
      .sort((a, b) => b[1] - a[1]).slice(0, 3);
    for (const [k, s] of top) parts.push(`${k} (${fmtConf(s)})`);
  }
  return parts.join("; ");
}

function showDecidedNote() {
  const it = items[current];
  const d = it && it.decision;
  $("decided-note").textContent = d ? `${(d.decided_tags || TAGS).join(", ")} decided by ${d.decided_by} at ${d.decided_at}`
    : it && it.stale ? "an earlier decision is ignored: the file changed since" : "not decided yet";
}

function show(id) {
  const prev = current;
  current = id;
  if (prev >= 0) markListItem(prev);
  $("empty").hidden = id >= 0;
  $("current").hidden = id < 0;
  if (id < 0) return;
  markListItem(id);
  const it = items[id];
  $("rel").textContent = it.rel;
  $("message").textContent = `${it.reason}: ${it.message}`;
  $("preview").src = previewUrl(id, "full");
  // The next file's preview is made while this one is looked at.
  const next = shown[shown.indexOf(id) + 1];
  if (next !== undefined) new Image().src = previewUrl(next, "full");
  const tbody = document.querySelector("#tags tbody");
  tbody.textContent = "";
  for (const t of TAGS) {
    const lab = it.labels ? it.labels[t] : null;
    const tr = document.createElement("tr");
    tr.dataset.tag = t;
    if (it.uncertain.includes(t)) tr.className = "uncertain";
    // Confidence and source share a column: the table fits a 1024-pixel screen.
    const cells = [TAG_NAMES[t], lab && lab.value ? lab.value + (lab.meaning ? ` — ${lab.meaning}` : "") : "(unknown)",
      lab ? `${fmtConf(lab.confidence)} ${lab.source}` : "", alternatives(lab)];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    const td = document.createElement("td");
    const sel = document.createElement("select");
    sel.id = `pick-${t}`;
    sel.setAttribute("aria-label", TAG_NAMES[t]);
    fillSelect(sel, t, values[id][t]);
    // Typing in a closed picker changes it without always firing "change": listen to all.
    for (const ev of ["input", "change", "keyup", "blur"]) {
      sel.addEventListener(ev, () => { if (sel.value !== values[id][t]) setValue(id, t, sel.value); });
    }
    td.append(sel);
    tr.append(td);
    tbody.append(tr);
  }
  turned(id);
  showDecidedNote();
  document.dispatchEvent(new CustomEvent("shown", { detail: id }));  // visit.js
  const li = document.querySelector(`#list li[data-id="${id}"]`);
  if (li) li.scrollIntoView({ block: "nearest" });
}

function turned(id) {
  const t = cssTransform(values[id].orientation);
  if (id === current) {
    $("preview").style.transform = t;
    $("orientation-text").textContent = values[id].orientation
      ? `orientation ${values[id].orientation}` : "orientation unknown (shown as stored)";
    const sel = $("pick-orientation");
    if (sel) sel.value = values[id].orientation;
  }
  const img = document.querySelector(`#list li[data-id="${id}"] img`);
  if (img) img.style.transform = t;
}

function touch(id, tag) {
  (touched[id] = touched[id] || new Set()).add(tag);
}

function setValue(id, tag, value) {
  values[id] = { ...values[id], [tag]: value };
  touch(id, tag);
  if (tag === "orientation") turned(id);
  save([id], [tag]);
}

// Accept confirms what is shown: every known value, and what the person chose here (an
// unknown picked on purpose included); an unknown nobody touched is not a decision.
function confirmedTags(id) {
  return TAGS.filter((t) => values[id][t] !== "" || (touched[id] && touched[id].has(t)));
}

// Turning what is shown: a rotation of the shown picture is a rotation the other way of a
// mirrored one (rotate first, then mirror).
function rotate(id, clockwise) {
  const o = parseOrientation(values[id].orientation);
  const step = (clockwise !== o.flip) ? 90 : 270;
  o.rotate = (o.rotate + step) % 360;
  setValue(id, "orientation", formatOrientation(o));
}
function flip(id) {
  const o = parseOrientation(values[id].orientation);
  o.flip = !o.flip;
  setValue(id, "orientation", formatOrientation(o));
}

function step(delta) {
  if (!shown.length) return;
  const i = shown.indexOf(current);
  const j = Math.min(shown.length - 1, Math.max(0, (i < 0 ? 0 : i + delta)));
  show(shown[j]);
}

async function accept() {
  if (current < 0) return;
  const id = current;
  const tags = confirmedTags(id);
  if (!(await save([id], tags))) return;
  offerSpread(id, spreadTags(id, tags));
  await showNext(id);
}

// ---- decisions that spread to look-alikes (nothing is saved before "Apply") ----

let offer = null;  // {from, tags, values, ids}

// What a decision may spread: the tags the models were unsure of or the person changed (a tag
// they were sure of is the same for every look-alike anyway).
function spreadTags(id, tags) {
  const proposed = proposedValues(items[id]);
  return tags.filter((t) => items[id].uncertain.includes(t) || values[id][t] !== proposed[t]);
}

async function offerSpread(id, tags) {
  if (!tags.length) return;
  const q = new URLSearchParams({ id: String(id), tags: tags.join(",") });
  let data;
  try {
    data = await (await api(`/api/similar?${q}`)).json();
  } catch (err) { return; }
  const ids = (data.ids || []).filter((x) => items[x]);
  if (!ids.length) return;
  offer = { from: id, tags: data.tags, values: {}, ids, ticked: new Set(ids) };
  for (const t of data.tags) offer.values[t] = values[id][t];
  const what = data.tags.map((t) => `${TAG_NAMES[t]} = ${offer.values[t] || "(unknown)"}`).join(", ");
  $("spread-text").textContent = `Same kind as ${items[id].rel}: apply ${what} to these ${ids.length} files?`;
  const ul = $("spread-strip");
  ul.textContent = "";
  for (const x of ids) {
    const li = document.createElement("li");
    li.dataset.id = String(x);
    li.title = items[x].rel;
    const thumb = document.createElement("span");
    thumb.className = "thumb";
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = items[x].rel;
    img.src = previewUrl(x, "thumb");
    img.style.transform = cssTransform(values[x].orientation);
    thumb.append(img);
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = true;
    box.title = "apply to this file";
    box.addEventListener("change", () => {
      if (box.checked) offer.ticked.add(x); else offer.ticked.delete(x);
      li.classList.toggle("unticked", !box.checked);
      spreadCount();
    });
    li.append(thumb, box);
    ul.append(li);
  }
  spreadCount();
  $("spread").hidden = false;
}

function spreadCount() {
  $("spread-apply").textContent = `Apply to ${offer.ticked.size} ticked`;
}

function hideSpread() {
  offer = null;
  $("spread").hidden = true;
  $("spread-strip").textContent = "";
}

async function applySpread() {
  if (!offer) return;
  const o = offer;
  const ids = o.ids.filter((x) => o.ticked.has(x));
  hideSpread();
  if (!ids.length) return;
  for (const x of ids) {
    values[x] = { ...values[x], ...o.values };
    for (const t of o.tags) touch(x, t);
  }
  if (await save(ids, o.tags)) {
    for (const x of ids) turned(x);
    if (ids.includes(current)) show(current);
    status(`applied to ${ids.length} similar file(s)`);
  }
}

// The next file: the one whose answer would settle the most others (the server's order, one
// per group of look-alikes); list order while no group is known.
async function showNext(after) {
  let order = [];
  try {
    const data = await (await api("/api/next")).json();
    order = data.order || [];
    lookalikeStatus(data.features);
  } catch (err) { order = []; }
  const best = order.find((o) => items[o.id] && !items[o.id].decision && shown.includes(o.id));
  if (best && best.settles.length) {
    show(best.id);
    $("next-note").textContent = `next: the answer for this file may settle ${best.settles.length} similar file(s)`;
    return;
  }
  $("next-note").textContent = "";
  const i = shown.indexOf(after);
  const next = shown.slice(i + 1).find((x) => !items[x].decision);
  if (next !== undefined) show(next); else step(1);
}

function bulkValues() {
  const tag = $("bulk-tag").value;
  fillSelect($("bulk-value"), tag, "");
}

async function bulkApply() {
  const tag = $("bulk-tag").value;
  const value = $("bulk-value").value;
  const ids = [...selected];
  for (const id of ids) { values[id] = { ...values[id], [tag]: value }; touch(id, tag); }
  if (await save(ids, [tag])) {  // that tag alone: the others stay as they were
    for (const id of ids) turned(id);
    if (ids.includes(current)) show(current);
  }
}

// Teaching as the person goes: the server learns from the decisions after every few and labels
// the undecided files again; those it is now sure of leave the list, with a count.
async function pollTeach() {
  let data;
  try {
    data = await (await api("/api/teach")).json();
  } catch (err) { setTimeout(pollTeach, 3000); return; }
  if (!data.enabled) return;
  const settled = new Set(data.settled);
  let changed = false;
  for (const it of items) {
    const now = settled.has(it.id);
    if (!!it.settled !== now) { it.settled = now; changed = true; }
  }
  const n = settled.size;
  $("taught").textContent = data.running ? `${data.message}…`
    : n ? `${n} file(s) no longer need you (taught from ${data.taught} decided)` : data.message;
  if (changed) {
    updateCounts();
    renderList();
  }
  setTimeout(pollTeach, data.running ? 1000 : 2500);
}

// The server looks at every listed file in the background (its features) before look-alikes
// are known; until then the page says how far it got.
function lookalikeStatus(f) {
  if (!f || !f.started) return true;
  const done = f.total === 0 || f.done >= f.total;
  $("lookalikes").textContent = f.error ? `look-alikes unavailable: ${f.error}`
    : done ? "look-alikes ready" : `looking for look-alikes: ${f.done}/${f.total} files`;
  return done || !!f.error;
}

async function pollLookalikes() {
  try {
    const data = await (await api("/api/next")).json();
    if (lookalikeStatus(data.features)) return;
  } catch (err) { return; }
  setTimeout(pollLookalikes, 1500);
}

document.addEventListener("keydown", (ev) => {
  const tgt = ev.target;
  if (tgt instanceof HTMLSelectElement || tgt instanceof HTMLInputElement) {
    if (ev.key === "Escape") tgt.blur();
    return;
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey || current < 0) return;
  let handled = true;
  switch (ev.key) {
    case "Enter": case "a": accept(); break;
    case "j": case "ArrowDown": step(1); break;
    case "k": case "ArrowUp": step(-1); break;
    case "r": rotate(current, true); break;
    case "R": rotate(current, false); break;
    case "f": flip(current); break;
    case "x": toggleSelect(current, !selected.has(current)); break;
    case "y": if (offer) applySpread(); else handled = false; break;
    case "n": if (offer) hideSpread(); else handled = false; break;
    case "1": case "2": case "3": case "4": $(`pick-${TAGS[Number(ev.key) - 1]}`).focus(); break;
    default: handled = false;
  }
  if (handled) ev.preventDefault();
});

// Decisions saved elsewhere (another tab, another `orthovision review` on this folder) are
// shown on the next poll; never over this page's own saves, nor under a picker in use.
const POLL_MS = 3000;
function sameDecision(a, b) {
  if (!a || !b) return !a && !b;
  const tags = (d) => (d.decided_tags || TAGS).join(" ");
  return tags(a) === tags(b)
    && [...TAGS, "decided_by", "decided_at"].every((k) => (a[k] || "") === (b[k] || ""));
}
async function poll() {
  if (saving || document.hidden) return;
  const gen = saveGen;
  let data;
  try {
    const resp = await fetch("/api/decisions");
    if (!resp.ok) return;
    data = await resp.json();
  } catch (err) {
    return;
  }
  if (saving || gen !== saveGen) return;
  const busy = document.activeElement instanceof HTMLSelectElement;
  let changed = false;
  for (const it of items) {
    const got = data.decisions[it.input];
    if (!got || (sameDecision(got.decision, it.decision) && got.stale === it.stale)) continue;
    if (it.id === current && busy) continue;  // the next poll, once the picker is left
    it.decision = got.decision;
    it.stale = got.stale;
    values[it.id] = shownValues(it);
    markListItem(it.id);
    turned(it.id);
    if (it.id === current) show(current);
    changed = true;
  }
  if (changed) updateCounts();
}

function button(id, fn) {
  $(id).addEventListener("click", (ev) => { ev.currentTarget.blur(); fn(); });
}

async function main() {
  const [itemsResp, codesResp] = await Promise.all([fetch("/api/items"), fetch("/api/codes")]);
  const data = await itemsResp.json();
  codes = await codesResp.json();
  items = data.items;
  $("output").textContent = data.output;
  for (const it of items) values[it.id] = shownValues(it);
  filterOptions();
  for (const t of TAGS) $("bulk-tag").append(new Option(TAG_NAMES[t], t));
  bulkValues();
  $("bulk-tag").addEventListener("change", bulkValues);
  $("filter").addEventListener("change", renderList);
  button("rot-left", () => rotate(current, false));
  button("rot-right", () => rotate(current, true));
  button("flip", () => flip(current));
  button("accept", accept);
  button("bulk-apply", bulkApply);
  button("spread-apply", applySpread);
  button("spread-dismiss", hideSpread);
  button("select-shown", () => shown.forEach((id) => toggleSelect(id, true)));
  button("select-none", () => [...selected].forEach((id) => toggleSelect(id, false)));
  updateCounts();
  renderList();
  setInterval(poll, POLL_MS);
  document.addEventListener("visibilitychange", poll);
  document.body.dataset.ready = "1";
  pollLookalikes();
  pollTeach();
}

main();
