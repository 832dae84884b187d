// Photos in the page: decoding for previews (the browser's decoders, plus PGM/PPM, which browsers lack and face
// datasets use), the faces the service found drawn as boxes, drag and drop, and the camera.

const MIN_PREVIEW_SIDE = 320; // small photos (ORL's 92×112) are scaled up so boxes and labels stay legible

/** {source, width, height} for drawing, or null when the browser cannot show this file (the service may still read it). */
export async function decodeImage(blob) {
  try {
    const bitmap = await createImageBitmap(blob, { imageOrientation: "from-image" });
    return { source: bitmap, width: bitmap.width, height: bitmap.height };
  } catch {
    // not a format the browser decodes: try the portable any-map family below
  }
  try {
    return decodePnm(new Uint8Array(await blob.arrayBuffer()));
  } catch {
    return null;
  }
}

/** Netpbm P2/P3 (text) and P5/P6 (binary) grey or colour images, 8 or 16 bits. Throws on anything else. */
export function decodePnm(bytes) {
  const magic = String.fromCharCode(bytes[0] ?? 0, bytes[1] ?? 0);
  if (!["P2", "P3", "P5", "P6"].includes(magic)) throw new Error("not a PNM image");
  const channels = magic === "P3" || magic === "P6" ? 3 : 1;
  let pos = 2;
  const token = () => {
    for (;;) {
      while (pos < bytes.length && /\s/.test(String.fromCharCode(bytes[pos]))) pos++;
      if (bytes[pos] === 0x23) {
        while (pos < bytes.length && bytes[pos] !== 0x0a && bytes[pos] !== 0x0d) pos++;
        continue;
      }
      break;
    }
    const start = pos;
    while (pos < bytes.length && !/\s/.test(String.fromCharCode(bytes[pos]))) pos++;
    if (start === pos) throw new Error("truncated PNM header");
    return Number.parseInt(String.fromCharCode(...bytes.subarray(start, pos)), 10);
  };
  const width = token();
  const height = token();
  const maxval = token();
  if (!(width > 0 && height > 0 && maxval > 0 && maxval < 65536) || width * height > 40_000_000) {
    throw new Error("bad PNM header");
  }
  const n = width * height * channels;
  const samples = new Float32Array(n);
  if (magic === "P5" || magic === "P6") {
    pos += 1; // the single whitespace after maxval
    const wide = maxval > 255;
    if (bytes.length < pos + n * (wide ? 2 : 1)) throw new Error("truncated PNM data");
    for (let i = 0; i < n; i++) {
      samples[i] = wide ? (bytes[pos + 2 * i] << 8) | bytes[pos + 2 * i + 1] : bytes[pos + i];
    }
  } else {
    for (let i = 0; i < n; i++) samples[i] = token();
  }
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  const data = ctx.createImageData(width, height);
  const scale = 255 / maxval;
  for (let p = 0; p < width * height; p++) {
    for (let c = 0; c < 3; c++) {
      data.data[4 * p + c] = Math.round(samples[p * channels + (channels === 3 ? c : 0)] * scale);
    }
    data.data[4 * p + 3] = 255;
  }
  ctx.putImageData(data, 0, 0);
  return { source: canvas, width, height };
}

function cssColor(name, fallback) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

/**
 * Draw `image` on `canvas`, then each face: {box: [x, y, w, h], image_size: [w, h], label, tone}, where tone is
 * "match", "nomatch" or "neutral". Boxes are in the uploaded image's pixels, scaled to the preview.
 */
export function drawFaces(canvas, image, faces = []) {
  const scale = Math.max(1, MIN_PREVIEW_SIDE / Math.max(image.width, image.height));
  canvas.width = Math.round(image.width * scale);
  canvas.height = Math.round(image.height * scale);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(image.source, 0, 0, canvas.width, canvas.height);
  const line = Math.max(2, Math.round(canvas.width / 160));
  const font = Math.max(13, Math.round(canvas.width / 28));
  const tones = {
    match: cssColor("--box-match", "#1a7f37"),
    nomatch: cssColor("--box-nomatch", "#c62828"),
    neutral: cssColor("--box-neutral", "#0b57d0"),
  };
  for (const face of faces) {
    const [iw, ih] = face.image_size ?? [image.width, image.height];
    const sx = canvas.width / iw;
    const sy = canvas.height / ih;
    const [x, y, w, h] = face.box;
    const colour = tones[face.tone ?? "neutral"] ?? tones.neutral;
    ctx.lineWidth = line;
    ctx.strokeStyle = "#ffffff";
    ctx.strokeRect(x * sx - line, y * sy - line, w * sx + 2 * line, h * sy + 2 * line);
    ctx.strokeStyle = colour;
    ctx.strokeRect(x * sx, y * sy, w * sx, h * sy);
    if (face.label) {
      ctx.font = `600 ${font}px system-ui, sans-serif`;
      const tw = ctx.measureText(face.label).width + 8;
      const ty = y * sy - font - 6 >= 0 ? y * sy - font - 6 : Math.min(canvas.height - font - 6, (y + h) * sy + 2);
      const tx = Math.min(Math.max(0, x * sx - line), canvas.width - tw);
      ctx.fillStyle = colour;
      ctx.fillRect(tx, ty, tw, font + 6);
      ctx.fillStyle = "#ffffff";
      ctx.textBaseline = "top";
      ctx.fillText(face.label, tx + 4, ty + 3);
    }
  }
}

function isImageFile(file) {
  return file.type.startsWith("image/") || /\.(pgm|pnm|ppm|pbm|tiff?|bmp|webp|jpe?g|png|gif)$/i.test(file.name);
}

/** Let `zone` take dropped image files; `onFiles` gets them as an array. */
export function wireDrop(zone, onFiles) {
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragging");
    const files = [...(e.dataTransfer?.files ?? [])].filter(isImageFile);
    if (files.length) onFiles(files);
  });
}

/** Put `files` into a file input, so that it names what will be sent whichever way the files came. */
export function fillInput(input, files) {
  const transfer = new DataTransfer();
  for (const f of files) transfer.items.add(f);
  input.files = transfer.files;
}

// ------------------------------------------------------------------------------------------------ camera

export function cameraAvailable() {
  return Boolean(window.isSecureContext && navigator.mediaDevices?.getUserMedia);
}

/** Open the camera dialog; resolves to a JPEG File of the frame taken, or null when cancelled or impossible. */
export async function takePhoto() {
  const dialog = document.getElementById("camera-dialog");
  const video = document.getElementById("camera-video");
  const error = document.getElementById("camera-error");
  const capture = document.getElementById("camera-capture");
  error.hidden = true;
  capture.disabled = true;
  dialog.returnValue = "";
  dialog.showModal();
  let stream = null;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user" }, audio: false });
    video.srcObject = stream;
    await video.play();
    capture.disabled = false;
    capture.focus();
  } catch (e) {
    error.textContent =
      e?.name === "NotAllowedError"
        ? "The browser was not allowed to use the camera. Allow it in the site settings, or pick a file instead."
        : "No camera could be opened. Pick a photo file instead.";
    error.hidden = false;
  }
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  try {
    if (dialog.returnValue !== "capture" || !stream || !video.videoWidth) return null;
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
    if (!blob) return null;
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    return new File([blob], `camera-${stamp}.jpg`, { type: "image/jpeg" });
  } finally {
    for (const track of stream?.getTracks() ?? []) track.stop();
    video.srcObject = null;
  }
}

// ------------------------------------------------------------------------------------------- photo slot

/** One photo input with a preview canvas: pick, drop or take a photo; then show the faces the service found. */
export class PhotoSlot {
  constructor(root) {
    this.root = root;
    this.input = root.querySelector('input[type="file"]');
    this.canvas = root.querySelector("canvas.preview");
    this.hint = root.querySelector(".drop-hint");
    this.file = null;
    this.image = null;
    this.input.addEventListener("change", () => this.set(this.input.files[0] ?? null));
    wireDrop(root.querySelector("[data-drop]"), (files) => {
      fillInput(this.input, files.slice(0, 1));
      this.set(files[0]);
    });
    const camera = root.querySelector(".camera-button");
    if (camera && cameraAvailable()) {
      camera.hidden = false;
      camera.addEventListener("click", async () => {
        const file = await takePhoto();
        if (file) {
          fillInput(this.input, [file]);
          await this.set(file);
        }
        camera.focus();
      });
    }
  }

  async set(file) {
    this.file = file;
    this.image = file ? await decodeImage(file) : null;
    this.root.dispatchEvent(new CustomEvent("photo-change", { bubbles: true }));
    this.showFaces([]);
  }

  showFaces(faces) {
    if (!this.file) {
      this.canvas.hidden = true;
      this.hint.hidden = false;
      this.hint.textContent = "Drop a photo here";
      return;
    }
    if (!this.image) {
      this.canvas.hidden = true;
      this.hint.hidden = false;
      this.hint.textContent = `${this.file.name}: no preview in this browser (the service may still read it).`;
      return;
    }
    this.hint.hidden = true;
    this.canvas.hidden = false;
    drawFaces(this.canvas, this.image, faces);
  }
}
