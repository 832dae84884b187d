// The service's HTTP API as the console uses it: the key kept for this tab only, the one error shape turned into
// plain words. The console lives at <service>/console/, so the API is one level up (reverse-proxy prefixes work).

const KEY_STORAGE = "siamface.apiKey";
const API_BASE = new URL("../", document.baseURI);

export const SUBJECT_ID_RE = /^[A-Za-z0-9_.@-]{1,128}$/;

// What each error code means for someone using the page. The service's own message is shown beside it.
const PLAIN_WORDS = {
  network: "The service cannot be reached. Check that it is running, then try again.",
  unauthorized: "The service needs an API key.",
  forbidden: "The API key was not accepted. Check it and enter it again.",
  no_face: "No face was found in the photo. Use a photo where the face is clearly visible and facing the camera.",
  multiple_faces: "The photo shows more than one face. Use a photo of one person, or tick “use the largest face”.",
  face_too_small: "The face is too small. Use a closer or larger photo.",
  face_error: "The face could not be used. Try another photo.",
  undecodable: "The file is not an image the service can read (JPEG, PNG, WebP, BMP, GIF, TIFF or PNM).",
  image_too_large: "The image has too many pixels for the service. Use a smaller image.",
  file_too_large: "The file is too large for the service. Use a smaller photo.",
  request_too_large: "Too much data in one request. Send fewer or smaller photos at a time.",
  empty_file: "The file is empty.",
  subject_not_found: "There is no enrolled subject with that id.",
  face_not_found: "That face is not enrolled (any more).",
  subject_has_no_faces: "That subject has no faces left to compare with.",
  unknown_far: "The model has no threshold calibrated for that false-accept rate.",
  no_usable_image: "None of the photos could be used.",
  invalid_request: "Some fields are missing or not valid.",
  bad_request: "The request was not valid.",
  not_found: "The service does not have that page or route.",
  not_ready: "The service is still loading the model and the gallery. Try again in a moment.",
  internal_error: "The service failed unexpectedly. Its log has the details.",
};

export class ApiError extends Error {
  constructor(status, code, message, details = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }

  /** One sentence for people, whatever the code. */
  get plain() {
    return PLAIN_WORDS[this.code] ?? `The service refused the request (HTTP ${this.status}).`;
  }
}

export function plainWords(code) {
  return PLAIN_WORDS[code] ?? null;
}

export function getKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

/**
 * Call the API. `form` (a FormData) is sent as multipart; `query` becomes the query string. Resolves to the JSON
 * answer; rejects with an ApiError (status 0 and code "network" when nothing answered). A 401 or 403 also fires
 * "siamface:auth" on document, so the page can ask for a key.
 */
export async function api(path, { method = "GET", form = null, query = null, auth = true } = {}) {
  const url = new URL(path.replace(/^\//, ""), API_BASE);
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, String(v));
  }
  const headers = { Accept: "application/json" };
  const key = getKey();
  if (auth && key) headers["X-API-Key"] = key;
  let response;
  try {
    response = await fetch(url, { method, headers, body: form, cache: "no-store" });
  } catch (e) {
    throw new ApiError(0, "network", String(e?.message ?? e));
  }
  let body = null;
  const text = await response.text();
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!response.ok) {
    const err = body?.error;
    const error = err
      ? new ApiError(response.status, err.code, err.message, err.details ?? null)
      : new ApiError(response.status, `http_${response.status}`, text.slice(0, 200) || response.statusText);
    if (response.status === 401 || response.status === 403) {
      document.dispatchEvent(new CustomEvent("siamface:auth", { detail: error }));
    }
    throw error;
  }
  return body;
}
