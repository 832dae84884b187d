// Identify: one photo searched against the gallery by POST /identify; the best candidates with their scores, or
// "unknown" when none reaches the threshold.

import { api } from "./api.js";
import { PhotoSlot } from "./images.js";
import { busy, el, errorBox, operatingPointWords, score, scoreMeter, show } from "./ui.js";

function candidatesTable(r) {
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      { class: "data", id: "identify-candidates" },
      el("caption", {}, "Closest subjects, best first"),
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          el("th", { scope: "col", class: "num" }, "Rank"),
          el("th", { scope: "col" }, "Subject id"),
          el("th", { scope: "col", class: "num" }, "Score"),
          el("th", { scope: "col" }, "Against the threshold"),
        ),
      ),
      el(
        "tbody",
        {},
        r.candidates.map((c, i) =>
          el(
            "tr",
            { class: c.subject_id === r.match ? "is-match" : null },
            el("td", { class: "num" }, String(i + 1)),
            el("th", { scope: "row" }, c.subject_id),
            el("td", { class: "num" }, score(c.score)),
            el("td", {}, scoreMeter(c.score, r.threshold, c.subject_id), c.score >= r.threshold ? "reaches" : "below"),
          ),
        ),
      ),
    ),
  );
}

export function initIdentify() {
  const form = document.getElementById("identify-form");
  const result = document.getElementById("identify-result");
  const slot = new PhotoSlot(form.querySelector('[data-slot="identify"]'));
  form.addEventListener("photo-change", () => show(result));

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!slot.file) {
      show(result, el("p", { class: "error-box", role: "alert" }, "Choose a photo first."));
      return;
    }
    const topK = Number(form.elements.top_k.value);
    if (!Number.isInteger(topK) || topK < 1 || topK > 100) {
      show(result, el("p", { class: "error-box", role: "alert" }, "Candidates must be a whole number from 1 to 100."));
      form.elements.top_k.focus();
      return;
    }
    const data = new FormData();
    data.append("image", slot.file, slot.file.name);
    data.append("top_k", String(topK));
    if (form.elements.far.value) data.append("far", form.elements.far.value);
    await busy(form, async () => {
      try {
        const r = await api("/identify", { method: "POST", form: data });
        const tone = r.match ? "match" : "nomatch";
        slot.showFaces([{ ...r.face, label: r.match ?? "unknown", tone }]);
        const best = r.candidates[0];
        let headline;
        if (r.match) {
          headline = el("p", { class: "verdict-title" }, "Match: ", el("span", { "data-field": "match" }, r.match));
        } else {
          headline = el("p", { class: "verdict-title" }, el("span", { "data-field": "match" }, "Unknown"));
        }
        let why;
        if (!best) why = "The gallery is empty: enroll someone first.";
        else if (r.match) why = `Best score ${score(best.score)} reaches the threshold ${score(r.threshold)} (${operatingPointWords(r.operating_point)}).`;
        else why = `No enrolled subject reaches the threshold ${score(r.threshold)} (${operatingPointWords(r.operating_point)}); the closest is ${best.subject_id} at ${score(best.score)}.`;
        show(
          result,
          el(
            "div",
            { class: `verdict ${tone}` },
            headline,
            el("p", {}, why),
            r.candidates.length ? candidatesTable(r) : null,
          ),
        );
      } catch (err) {
        slot.showFaces([]);
        show(result, errorBox(err));
      }
    });
  });
  return {};
}
