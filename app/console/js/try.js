// Try: two photos (files, drops or the camera) compared by POST /verify with `reference`; the faces found drawn
// on both, the score against the threshold, and the verdict.

import { api } from "./api.js";
import { PhotoSlot } from "./images.js";
import { busy, el, errorBox, operatingPointWords, score, scoreMeter, show } from "./ui.js";

export function initTry() {
  const form = document.getElementById("try-form");
  const result = document.getElementById("try-result");
  const first = new PhotoSlot(form.querySelector('[data-slot="try-a"]'));
  const second = new PhotoSlot(form.querySelector('[data-slot="try-b"]'));
  form.addEventListener("photo-change", () => {
    show(result); // a new photo: the old verdict and boxes no longer apply
    first.showFaces([]);
    second.showFaces([]);
  });

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!first.file || !second.file) {
      show(result, el("p", { class: "error-box", role: "alert" }, "Choose two photos first."));
      return;
    }
    const data = new FormData();
    data.append("image", first.file, first.file.name);
    data.append("reference", second.file, second.file.name);
    if (form.elements.far.value) data.append("far", form.elements.far.value);
    await busy(form, async () => {
      try {
        const r = await api("/verify", { method: "POST", form: data });
        const tone = r.match ? "match" : "nomatch";
        first.showFaces([{ ...r.face, label: "Face 1", tone }]);
        second.showFaces([{ ...(r.reference_face ?? r.face), label: "Face 2", tone }]);
        const closer = r.higher_is_closer ? "higher = closer" : "lower = closer";
        show(
          result,
          el(
            "div",
            { class: `verdict ${tone}`, dataset: { match: String(r.match) } },
            el("p", { class: "verdict-title" }, r.match ? "Same person" : "Different people"),
            el(
              "p",
              {},
              "Score ",
              el("strong", { "data-field": "score" }, score(r.score)),
              r.match ? " reaches the threshold " : " is below the threshold ",
              el("strong", { "data-field": "threshold" }, score(r.threshold)),
              ` (${operatingPointWords(r.operating_point)}).`,
            ),
            scoreMeter(r.score, r.threshold, "Same-person score"),
            el(
              "p",
              { class: "hint small" },
              `${r.metric} ${r.higher_is_closer ? "similarity" : "distance"} ${r.distance.toFixed(4)} (${closer}); `,
              `faces of ${r.face.box[2]}×${r.face.box[3]} and `,
              `${(r.reference_face ?? r.face).box[2]}×${(r.reference_face ?? r.face).box[3]} pixels.`,
            ),
          ),
        );
      } catch (err) {
        first.showFaces([]);
        second.showFaces([]);
        show(result, errorBox(err));
      }
    });
  });
  return {};
}
