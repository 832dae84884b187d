// Enroll: a subject id and one or more photos (files, drops or the camera) sent to POST /enroll; each photo's
// result: enrolled (with its face drawn) or the reason it was rejected.

import { api, plainWords, SUBJECT_ID_RE } from "./api.js";
import { cameraAvailable, decodeImage, drawFaces, takePhoto, wireDrop } from "./images.js";
import { busy, el, errorBox, show } from "./ui.js";

export function initEnroll(ctx) {
  const form = document.getElementById("enroll-form");
  const input = document.getElementById("enroll-files");
  const thumbs = document.getElementById("enroll-thumbs");
  const result = document.getElementById("enroll-result");
  const subject = document.getElementById("enroll-subject");
  let photos = []; // [{file, image}]

  async function add(files) {
    for (const file of files) photos.push({ file, image: await decodeImage(file) });
    render();
  }

  function thumb(photo, faces = []) {
    if (!photo.image) return el("span", { class: "thumb-none" }, "no preview");
    const canvas = el("canvas", { class: "thumb-canvas", role: "img", "aria-label": `${photo.file.name}` });
    drawFaces(canvas, photo.image, faces);
    return canvas;
  }

  function render() {
    show(
      thumbs,
      photos.map((p, i) =>
        el(
          "li",
          { class: "thumb" },
          thumb(p),
          el("span", { class: "thumb-name" }, p.file.name),
          el(
            "button",
            {
              type: "button",
              class: "link",
              "aria-label": `Remove ${p.file.name}`,
              onclick: () => {
                photos.splice(i, 1);
                render();
                input.focus();
              },
            },
            "Remove",
          ),
        ),
      ),
    );
    thumbs.previousElementSibling.hidden = photos.length > 0;
  }

  input.addEventListener("change", async () => {
    const files = [...input.files];
    input.value = ""; // the list below holds the photos; the input only adds to it
    await add(files);
    show(result);
  });
  wireDrop(document.getElementById("enroll-drop"), (files) => add(files));
  document.getElementById("enroll-clear").addEventListener("click", () => {
    photos = [];
    render();
    show(result);
  });
  const camera = document.getElementById("enroll-camera");
  if (cameraAvailable()) {
    camera.hidden = false;
    camera.addEventListener("click", async () => {
      const file = await takePhoto();
      if (file) await add([file]);
      camera.focus();
    });
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const id = subject.value.trim();
    if (!SUBJECT_ID_RE.test(id)) {
      subject.setAttribute("aria-invalid", "true");
      show(
        result,
        el(
          "p",
          { class: "error-box", role: "alert" },
          "Enter a subject id: 1 to 128 letters, digits or the characters _ . - @ (no spaces).",
        ),
      );
      subject.focus();
      return;
    }
    subject.removeAttribute("aria-invalid");
    if (!photos.length) {
      show(result, el("p", { class: "error-box", role: "alert" }, "Add at least one photo."));
      input.focus();
      return;
    }
    const sent = [...photos];
    const data = new FormData();
    data.append("subject_id", id);
    const name = form.elements.name.value.trim();
    if (name) data.append("name", name);
    if (form.elements.largest.checked) data.append("largest", "true");
    for (const p of sent) data.append("images", p.file, p.file.name);
    await busy(form, async () => {
      try {
        const r = await api("/enroll", { method: "POST", form: data });
        const rejected = r.images.filter((i) => i.rejection).length;
        const what = r.created ? `New subject ${r.subject_id}` : `Subject ${r.subject_id}`;
        show(
          result,
          el(
            "div",
            { class: `verdict ${r.enrolled ? "match" : "nomatch"}` },
            el(
              "p",
              { class: "verdict-title", "data-field": "summary" },
              `${what}: ${r.enrolled} face${r.enrolled === 1 ? "" : "s"} enrolled, ${r.faces} in total.`,
            ),
            rejected ? el("p", {}, `${rejected} photo${rejected === 1 ? " was" : "s were"} rejected (below).`) : null,
            el(
              "ul",
              { class: "outcomes", id: "enroll-outcomes" },
              r.images.map((img) => {
                const photo = sent[img.index];
                const ok = img.face_id !== null && img.face_id !== undefined;
                const faces = ok && img.face ? [{ ...img.face, label: `face ${img.face_id}`, tone: "match" }] : [];
                return el(
                  "li",
                  { class: `outcome ${ok ? "ok" : "rejected"}` },
                  photo ? thumb(photo, faces) : null,
                  el(
                    "div",
                    {},
                    el("p", { class: "thumb-name" }, img.filename ?? `photo ${img.index + 1}`),
                    ok
                      ? el("p", { class: "ok-text" }, `Enrolled as face ${img.face_id}`)
                      : el(
                          "p",
                          { class: "error-text" },
                          `Rejected: ${plainWords(img.rejection.code) ?? img.rejection.message}`,
                        ),
                  ),
                );
              }),
            ),
          ),
        );
        photos = [];
        render();
        ctx.refreshStatus();
      } catch (err) {
        show(result, errorBox(err, "Nothing was enrolled. "));
      }
    });
  });
  render();
  return {};
}
