// Small DOM helpers shared by the sections.

import { ApiError, plainWords } from "./api.js";

/** Create an element: el("td", {class: "num"}, "3") — attributes, then children (strings become text; arrays,
 * nested or not, are spread; null, undefined and false are skipped). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function score(x) {
  return Number(x).toFixed(3);
}

export function when(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

/** What a FAR key of the card ("1e-3") means, in words. */
export function farWords(key) {
  return `about 1 in ${Math.round(1 / Number(key)).toLocaleString("en")} different-person pairs accepted`;
}

/** An error box for `error` (an ApiError or anything thrown): plain words first, the service's message after. */
export function errorBox(error, prefix = "") {
  const box = el("div", { class: "error-box", role: "alert" });
  if (error instanceof ApiError) {
    box.append(el("p", { class: "error-title" }, prefix + error.plain));
    if (error.code !== "network" && error.message) {
      box.append(el("p", { class: "error-detail" }, `The service said: ${error.message}`));
    }
    const perImage = Array.isArray(error.details) ? error.details : [];
    if (perImage.length) {
      box.append(
        el(
          "ul",
          { class: "error-list" },
          perImage.map((d) => {
            const why = d.rejection ?? d;
            const name = d.filename ?? `photo ${(d.index ?? 0) + 1}`;
            return el("li", {}, `${name}: ${plainWords(why.code) ?? why.message ?? why.code}`);
          }),
        ),
      );
    }
  } else {
    box.append(el("p", { class: "error-title" }, `${prefix}Something went wrong in the page: ${error?.message ?? error}`));
  }
  return box;
}

/** Replace the children of `node`. */
export function show(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter(Boolean));
}

/** Disable a form's submit button and mark the form busy while `work` runs. */
export async function busy(form, work) {
  const button = form.querySelector('button[type="submit"]');
  const label = button?.textContent;
  form.setAttribute("aria-busy", "true");
  if (button) {
    button.disabled = true;
    button.textContent = "Working…";
  }
  try {
    return await work();
  } finally {
    form.removeAttribute("aria-busy");
    if (button) {
      button.disabled = false;
      button.textContent = label;
    }
  }
}

/** Ask for confirmation in the page's dialog; resolves to true when confirmed. */
export function confirmAction(title, text, action = "Delete") {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = action;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
  });
}

/** The decision as a bar: the score's fill and the threshold's mark, both on [0, 1]. */
export function scoreMeter(value, threshold, label) {
  const meter = el("div", {
    class: "meter",
    role: "img",
    "aria-label": `${label}: score ${score(value)} of 1, threshold ${score(threshold)}`,
  });
  meter.style.setProperty("--score", String(Math.min(1, Math.max(0, value))));
  meter.style.setProperty("--threshold", String(Math.min(1, Math.max(0, threshold))));
  meter.append(el("span", { class: "meter-fill" }), el("span", { class: "meter-mark" }));
  return meter;
}

export function operatingPointWords(point) {
  if (point.far !== null && point.far !== undefined) return `calibrated for a false-accept rate of ${point.far}`;
  return "the model's default: fewest errors overall";
}
