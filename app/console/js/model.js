// Model: the loaded model's card (GET /model): what it is, what was measured, and what each threshold means.

import { el, farWords, show, when } from "./ui.js";

const HIGHER_IS_CLOSER = new Set(["cosine"]);

function sigmoid(x) {
  return 1 / (1 + Math.exp(-x));
}

function percent(x) {
  return x === null || x === undefined || Number.isNaN(Number(x)) ? "—" : `${(100 * Number(x)).toFixed(1)}%`;
}

function fixed(x, digits = 3) {
  return x === null || x === undefined || Number.isNaN(Number(x)) ? "—" : Number(x).toFixed(digits);
}

function facts(pairs) {
  return el(
    "dl",
    { class: "facts" },
    pairs.filter(([, v]) => v !== null && v !== undefined && v !== "").map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]),
  );
}

function thresholdTable(card) {
  const cal = card.thresholds?.verification;
  if (!cal) return el("p", {}, "This card has no calibrated thresholds: the service cannot make decisions with it.");
  const higher = HIGHER_IS_CLOSER.has(cal.distance ?? card.distance);
  const sign = higher ? "≥" : "≤";
  const toScore = (t) => sigmoid(cal.platt.a * t + cal.platt.b);
  const rows = [
    ["Default", "fewest errors overall (accuracy-optimal)", cal.threshold],
    ...Object.entries(cal.far_thresholds ?? {})
      .sort(([a], [b]) => Number(b) - Number(a))
      .map(([k, t]) => [`FAR ${k}`, farWords(k), t]),
  ];
  return el(
    "div",
    {},
    el(
      "div",
      { class: "table-wrap" },
      el(
        "table",
        { class: "data", id: "model-thresholds" },
        el("caption", {}, "Operating points: a pair is the same person when…"),
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            el("th", { scope: "col" }, "Threshold"),
            el("th", { scope: "col" }, "What it means"),
            el("th", { scope: "col", class: "num" }, `${cal.distance} ${sign}`),
            el("th", { scope: "col", class: "num" }, "score ≥"),
          ),
        ),
        el(
          "tbody",
          {},
          rows.map(([name, meaning, t]) =>
            el(
              "tr",
              {},
              el("th", { scope: "row" }, name),
              el("td", {}, meaning),
              el("td", { class: "num" }, fixed(t, 4)),
              el("td", { class: "num" }, fixed(toScore(t))),
            ),
          ),
        ),
      ),
    ),
    el(
      "p",
      { class: "hint small" },
      `Scores are the ${cal.distance} ${higher ? "similarity" : "distance"} mapped into [0, 1] ` +
        `(score = 1 / (1 + e^−(${fixed(cal.platt.a)}·d ${cal.platt.b < 0 ? "−" : "+"} ${fixed(Math.abs(cal.platt.b))}))). `,
      `Calibrated on ${Number(cal.n_genuine).toLocaleString("en")} same-person and `,
      `${Number(cal.n_impostor).toLocaleString("en")} different-person pairs: ${cal.fitted_on?.threshold ?? ""}`,
    ),
  );
}

function metricsTable(card) {
  const metrics = Object.entries(card.metrics ?? {});
  if (!metrics.length) return el("p", {}, "The card records no measurements.");
  const fars = [...new Set(metrics.flatMap(([, m]) => Object.keys(m.tar_at_far ?? {})))].sort(
    (a, b) => Number(b) - Number(a),
  );
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      { class: "data", id: "model-metrics" },
      el("caption", {}, "Measured (each row's protocol below its name)"),
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          el("th", { scope: "col" }, "Protocol"),
          el("th", { scope: "col", class: "num" }, "Accuracy"),
          el("th", { scope: "col", class: "num" }, "AUC"),
          el("th", { scope: "col", class: "num" }, "EER"),
          fars.map((f) => el("th", { scope: "col", class: "num" }, `TAR at FAR ${f}`)),
        ),
      ),
      el(
        "tbody",
        {},
        metrics.map(([name, m]) =>
          el(
            "tr",
            {},
            el("th", { scope: "row" }, el("span", {}, name), m.protocol ? el("span", { class: "protocol" }, m.protocol) : null),
            el("td", { class: "num" }, percent(m.accuracy ?? m.one_shot_accuracy)),
            el("td", { class: "num" }, fixed(m.auc)),
            el("td", { class: "num" }, percent(m.eer)),
            fars.map((f) => el("td", { class: "num" }, percent(m.tar_at_far?.[f]))),
          ),
        ),
      ),
    ),
  );
}

/** Render `response` (GET /model's answer, or null before a key is given) into `container`. */
export function renderModel(container, response) {
  if (!response) {
    show(container, el("p", { class: "hint" }, "Enter an API key to see the model card."));
    return;
  }
  const card = response.card;
  const face = card.face ?? {};
  show(
    container,
    el("h3", { id: "model-title" }, `${card.name} ${card.version}`),
    facts([
      ["Model id", el("code", {}, response.model_id)],
      ["Created", when(card.created)],
      ["Embedding", `${card.embedding_dim} numbers per face, compared by ${card.distance}`],
      [
        "Input",
        card.preprocess
          ? `${card.preprocess.size?.join("×")} pixels, ${card.preprocess.channels === 1 ? "grey" : "colour"}`
          : null,
      ],
      ["Face detector", face.detector ? `${face.detector.name}, faces of at least ${face.min_face} pixels` : null],
      ["Trained on", card.data?.train],
      ["Terms", card.data?.terms],
    ]),
    el("h3", {}, "Thresholds"),
    thresholdTable(card),
    el("h3", {}, "Metrics"),
    metricsTable(card),
  );
}
