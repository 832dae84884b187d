// Gallery: enrolled subjects a page at a time (GET /subjects), found by id (GET /subjects/{id}), their faces, and
// deletion of a subject or one face after a confirmation.

import { api, ApiError, SUBJECT_ID_RE } from "./api.js";
import { busy, confirmAction, el, errorBox, show, when } from "./ui.js";

export function initGallery(ctx) {
  const search = document.getElementById("gallery-search");
  const query = document.getElementById("gallery-query");
  const pageSize = document.getElementById("gallery-page-size");
  const summary = document.getElementById("gallery-summary");
  const body = document.querySelector("#gallery-table tbody");
  const prev = document.getElementById("gallery-prev");
  const next = document.getElementById("gallery-next");
  const detail = document.getElementById("subject-detail");
  const detailTitle = document.getElementById("subject-detail-title");
  const detailMeta = document.getElementById("subject-detail-meta");
  const faceBody = document.querySelector("#subject-faces tbody");
  const view = { offset: 0, total: 0, found: null, open: null }; // found: the id searched for; open: detail shown

  const limit = () => Number(pageSize.value);

  function row(s) {
    return el(
      "tr",
      { dataset: { subject: s.subject_id } },
      el("th", { scope: "row" }, s.subject_id),
      el("td", {}, s.name ?? ""),
      el("td", { class: "num" }, String(s.face_count)),
      el("td", { class: "wide-only" }, when(s.created_at)),
      el(
        "td",
        { class: "actions" },
        el(
          "button",
          {
            type: "button",
            class: "secondary",
            "aria-label": `Show the faces of ${s.subject_id}`,
            onclick: () => openSubject(s.subject_id, true),
          },
          "Faces",
        ),
        el(
          "button",
          {
            type: "button",
            class: "danger",
            "aria-label": `Delete subject ${s.subject_id}`,
            onclick: () => deleteSubject(s),
          },
          "Delete",
        ),
      ),
    );
  }

  function say(text, error = null) {
    show(summary, error ? errorBox(error) : text);
  }

  async function load() {
    prev.disabled = next.disabled = true;
    try {
      if (view.found !== null) {
        let rows = [];
        try {
          rows = [await api(`/subjects/${encodeURIComponent(view.found)}`)];
          say(`Found subject “${view.found}”.`);
        } catch (e) {
          if (!(e instanceof ApiError && e.code === "subject_not_found")) throw e;
          say(`No subject has the id “${view.found}”.`);
        }
        show(body, rows.map(row));
        return;
      }
      let page = await api("/subjects", { query: { offset: view.offset, limit: limit() } });
      if (!page.data.length && page.count > 0 && view.offset > 0) {
        view.offset = Math.max(0, Math.floor((page.count - 1) / limit()) * limit()); // the page emptied: step back
        page = await api("/subjects", { query: { offset: view.offset, limit: limit() } });
      }
      view.total = page.count;
      show(body, page.data.map(row));
      say(
        page.count
          ? `Subjects ${view.offset + 1}–${view.offset + page.data.length} of ${page.count.toLocaleString("en")}.`
          : "No subjects are enrolled yet. Enroll someone in the Enroll section.",
      );
      prev.disabled = view.offset === 0;
      next.disabled = view.offset + limit() >= page.count;
    } catch (e) {
      show(body);
      say(null, e);
    }
  }

  async function openSubject(id, focus = false) {
    try {
      const s = await api(`/subjects/${encodeURIComponent(id)}`);
      view.open = id;
      detail.hidden = false;
      detailTitle.textContent = `Faces of ${s.subject_id}`;
      const extra = Object.keys(s.metadata ?? {}).length ? ` · metadata ${JSON.stringify(s.metadata)}` : "";
      detailMeta.textContent = `${s.name ? `${s.name} · ` : ""}${s.face_count} face${s.face_count === 1 ? "" : "s"}${extra}`;
      show(
        faceBody,
        s.faces.map((f) =>
          el(
            "tr",
            { dataset: { face: String(f.face_id) } },
            el("th", { scope: "row", class: "num" }, String(f.face_id)),
            el("td", {}, f.source ?? ""),
            el("td", {}, f.box ? f.box.join(", ") : ""),
            el("td", { class: "wide-only" }, when(f.created_at)),
            el(
              "td",
              { class: "actions" },
              el(
                "button",
                {
                  type: "button",
                  class: "danger",
                  "aria-label": `Delete face ${f.face_id} of ${s.subject_id}`,
                  onclick: () => deleteFace(s.subject_id, f.face_id),
                },
                "Delete face",
              ),
            ),
          ),
        ),
      );
      if (!s.faces.length) show(faceBody, el("tr", {}, el("td", { colspan: "5" }, "No faces left.")));
      if (focus) detailTitle.focus();
    } catch (e) {
      closeSubject();
      if (!(e instanceof ApiError && e.code === "subject_not_found")) say(null, e);
    }
  }

  function closeSubject() {
    view.open = null;
    detail.hidden = true;
  }

  async function deleteSubject(s) {
    const faces = `${s.face_count} face${s.face_count === 1 ? "" : "s"}`;
    const ok = await confirmAction(
      `Delete subject ${s.subject_id}?`,
      `The subject ${s.subject_id} and its ${faces} will be removed from the gallery. This cannot be undone.`,
      "Delete subject",
    );
    if (!ok) return;
    try {
      const r = await api(`/subjects/${encodeURIComponent(s.subject_id)}`, { method: "DELETE" });
      if (view.open === s.subject_id) closeSubject();
      if (view.found === s.subject_id) view.found = null;
      await load();
      say(`Deleted subject ${r.subject_id} and ${r.face_ids.length} face${r.face_ids.length === 1 ? "" : "s"}.`);
      ctx.refreshStatus();
    } catch (e) {
      say(null, e);
    }
  }

  async function deleteFace(subjectId, faceId) {
    const ok = await confirmAction(
      `Delete face ${faceId}?`,
      `Face ${faceId} of ${subjectId} will be removed from the gallery (the subject stays). This cannot be undone.`,
      "Delete face",
    );
    if (!ok) return;
    try {
      await api(`/subjects/${encodeURIComponent(subjectId)}/faces/${faceId}`, { method: "DELETE" });
      await openSubject(subjectId);
      await load();
      say(`Deleted face ${faceId} of ${subjectId}.`);
      ctx.refreshStatus();
    } catch (e) {
      say(null, e);
    }
  }

  search.addEventListener("submit", async (e) => {
    e.preventDefault();
    const id = query.value.trim();
    if (id && !SUBJECT_ID_RE.test(id)) {
      say("A subject id has only letters, digits and the characters _ . - @.");
      return;
    }
    view.found = id || null;
    view.offset = 0;
    await busy(search, load);
    if (view.found) openSubject(view.found);
  });
  document.getElementById("gallery-all").addEventListener("click", () => {
    query.value = "";
    view.found = null;
    view.offset = 0;
    load();
  });
  pageSize.addEventListener("change", () => {
    view.offset = 0;
    load();
  });
  prev.addEventListener("click", () => {
    view.offset = Math.max(0, view.offset - limit());
    load();
  });
  next.addEventListener("click", () => {
    view.offset += limit();
    load();
  });

  return {
    activate() {
      load();
      if (view.open) openSubject(view.open);
    },
  };
}
