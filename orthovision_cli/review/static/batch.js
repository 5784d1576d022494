// Batch questions (issue 20): "Are the radiographs in <folder> scanned films or digital?",
// asked once per source folder instead of once per file. Self-contained: its own endpoints
// (/api/batch, /api/batch-answer), its own panel (#batch-questions); it only adds a class to
// the list entries that an answer settles.
"use strict";

(() => {
  const panel = document.getElementById("batch-questions");
  const token = document.querySelector('meta[name="orthovision-token"]').content;
  const MODALITY = { film: "RG", digital: "DX" };
  let settled = new Set();

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  function markList() {
    for (const li of document.querySelectorAll("#list li[data-id]")) {
      li.classList.toggle("settled", settled.has(Number(li.dataset.id)));
    }
  }

  function render(data) {
    settled = new Set(data.settled);
    panel.textContent = "";
    for (const q of data.questions) {
      const p = el("p", "", "question");
      p.dataset.folder = q.folder;
      p.append("Are the radiographs in ", el("b", q.folder), " scanned films or digital? ");
      for (const [value, label] of [["film", "Scanned films (RG)"], ["digital", "Digital (DX)"]]) {
        const b = el("button", label, `answer-${value}`);
        b.type = "button";
        b.addEventListener("click", () => answer(q.folder, value));
        p.append(b, " ");
      }
      p.append(el("span", `${q.files} file(s) wait for this; ${q.would_settle} need nothing else`, "count"));
      panel.append(p);
    }
    for (const a of data.answered) {
      const p = el("p", "", "answered");
      p.dataset.folder = a.folder;
      p.append(
        el("b", a.folder),
        `: ${a.acquisition === "film" ? "scanned films" : "digital"} (${MODALITY[a.acquisition]}), ` +
          `answered by ${a.answered_by} ${a.answered_at}. `,
        el("span", `${a.settled} of ${a.files} file(s) settled`, "count"),
        a.settled ? ": they convert on the next convert, or now with `orthovision review OUT --apply`." : ".",
      );
      panel.append(p);
    }
    panel.hidden = !data.questions.length && !data.answered.length;
    markList();
  }

  async function answer(folder, acquisition) {
    const resp = await fetch("/api/batch-answer", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Orthovision-Token": token },
      body: JSON.stringify({ folder, acquisition }),
    });
    const data = await resp.json();
    if (!resp.ok) {
      panel.append(el("p", `not saved: ${data.error}`, "error"));
      return;
    }
    render(data);
  }

  async function load() {
    const resp = await fetch("/api/batch", { headers: { "X-Orthovision-Token": token } });
    if (resp.ok) render(await resp.json());
  }

  // The list is (re)drawn by page.js: keep the marks on whatever it draws.
  const list = document.getElementById("list");
  if (list) new MutationObserver(markList).observe(list, { childList: true });
  load();
})();
