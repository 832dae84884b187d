// The console's entry point: sections as tabs (linkable as #try, #enroll, …), the API key dialog, the service's
// status line, and the model card that several sections read (thresholds to choose from).

import { api, ApiError, getKey, setKey } from "./api.js";
import { initEnroll } from "./enroll.js";
import { initGallery } from "./gallery.js";
import { initIdentify } from "./identify.js";
import { renderModel } from "./model.js";
import { initTry } from "./try.js";
import { el, farWords, show } from "./ui.js";

const state = {
  card: null, // {model_id, card} from GET /model
  sections: {}, // name -> {activate()}
};

// ------------------------------------------------------------------------------------------------- tabs

const tabs = [...document.querySelectorAll('[role="tab"]')];
const names = tabs.map((t) => t.id.replace(/^tab-/, ""));

function selectTab(name, { focus = false, updateHash = true } = {}) {
  if (!names.includes(name)) name = names[0];
  for (const tab of tabs) {
    const selected = tab.id === `tab-${name}`;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    document.getElementById(tab.getAttribute("aria-controls")).hidden = !selected;
    if (selected && focus) tab.focus();
  }
  if (updateHash && location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  state.sections[name]?.activate?.();
}

document.getElementById("tabs").addEventListener("keydown", (e) => {
  const i = tabs.indexOf(document.activeElement);
  if (i < 0) return;
  const moves = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 };
  if (!(e.key in moves)) return;
  e.preventDefault();
  selectTab(names[(moves[e.key] + tabs.length) % tabs.length], { focus: true });
});
for (const tab of tabs) tab.addEventListener("click", () => selectTab(tab.id.replace(/^tab-/, "")));
window.addEventListener("hashchange", () => selectTab(location.hash.slice(1), { updateHash: false }));

// ---------------------------------------------------------------------------------------------- API key

const keyDialog = document.getElementById("key-dialog");
const keyInput = document.getElementById("key-input");
const keyReason = document.getElementById("key-reason");
const keyForget = document.getElementById("key-forget");
const defaultReason = [...keyReason.childNodes].map((n) => n.cloneNode(true));

function askForKey(reason = null) {
  if (keyDialog.open) return;
  if (reason) keyReason.textContent = reason;
  else keyReason.replaceChildren(...defaultReason.map((n) => n.cloneNode(true)));
  keyInput.value = "";
  keyDialog.returnValue = "";
  keyDialog.showModal();
  keyInput.focus();
}

function showKeyState() {
  keyForget.hidden = !getKey();
}

keyDialog.addEventListener("close", () => {
  const key = keyInput.value.trim();
  keyInput.value = "";
  if (keyDialog.returnValue === "save" && key) {
    setKey(key);
    showKeyState();
    loadCard();
  }
});
document.getElementById("key-open").addEventListener("click", () => askForKey());
keyForget.addEventListener("click", () => {
  setKey(null);
  showKeyState();
  state.card = null;
  applyCard();
  notice("The key was forgotten. Enter it again to use the service.");
});
document.addEventListener("siamface:auth", (e) => {
  askForKey(e.detail.code === "forbidden" ? e.detail.plain : null); // no key yet: the default text says where it is
});

// ------------------------------------------------------------------------------------ status and notices

const noticeBox = document.getElementById("notice");

function notice(text) {
  noticeBox.textContent = text ?? "";
  noticeBox.hidden = !text;
}

async function refreshStatus() {
  const status = document.getElementById("service-status");
  try {
    const ready = await api("/ready", { auth: false });
    const model = ready.model.split("#")[0].replace("@", " ");
    const subjects = `${ready.subjects.toLocaleString("en")} subject${ready.subjects === 1 ? "" : "s"}`;
    const faces = `${ready.faces.toLocaleString("en")} face${ready.faces === 1 ? "" : "s"}`;
    status.textContent = `Ready · model ${model} · ${subjects}, ${faces}`;
    status.dataset.state = "ready";
  } catch (e) {
    status.textContent = e instanceof ApiError ? `Not ready: ${e.plain}` : "Not ready";
    status.dataset.state = "error";
  }
}

// ---------------------------------------------------------------------------------------------- the card

function applyCard() {
  const far = state.card?.card?.thresholds?.verification?.far_thresholds ?? {};
  const keys = Object.keys(far).sort((a, b) => Number(b) - Number(a));
  for (const select of document.querySelectorAll("select.far-select")) {
    const chosen = select.value;
    show(
      select,
      el("option", { value: "" }, "Default (fewest errors overall)"),
      keys.map((k) => el("option", { value: k }, `False-accept rate ${k} (${farWords(k)})`)),
    );
    if (keys.includes(chosen)) select.value = chosen;
  }
  renderModel(document.getElementById("model-card"), state.card);
}

async function loadCard() {
  try {
    state.card = await api("/model");
    notice(null);
  } catch (e) {
    state.card = null;
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
      notice("Enter an API key (the “API key” button) to use the console.");
    } else {
      notice(e instanceof ApiError ? e.plain : String(e));
    }
  }
  applyCard();
  refreshStatus();
  const current = location.hash.slice(1);
  if (state.card && current === "gallery") state.sections.gallery.activate();
}

// ------------------------------------------------------------------------------------------------- start

const context = { refreshStatus, card: () => state.card };
state.sections = {
  try: initTry(),
  enroll: initEnroll(context),
  identify: initIdentify(),
  gallery: initGallery(context),
  model: { activate: () => renderModel(document.getElementById("model-card"), state.card) },
};
showKeyState();
selectTab(location.hash.slice(1) || "try", { updateHash: Boolean(location.hash) });
loadCard();
