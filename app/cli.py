"""`siamface serve` and `siamface enroll DIR`: the service's command line (settings from SIAMFACE_* as always).

    siamface serve [--host H] [--port P]
    siamface enroll DIR [--largest]    # DIR/<subject_id>/<images>: one subject per folder

Bulk enrollment writes to the gallery store directly (no HTTP, no API key); a server already running on the
same gallery (data dir or database) picks the new faces up from the store's change log within a second.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm", ".pnm"}


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app
    from app.settings import get_settings

    settings = get_settings()
    host = args.host or settings.host
    port = args.port or settings.port
    # access_log lines carry method, path and status only: never headers, so never an API key.
    uvicorn.run(create_app(), host=host, port=port, log_level=settings.log_level, proxy_headers=False)
    return 0


def _enroll(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from app.errors import EnrollmentRejected, FileTooLarge
    from app.schemas import SUBJECT_ID_RE
    from app.service import Upload, load_resources
    from app.settings import get_settings

    root = Path(args.dir)
    if not root.is_dir():
        print(f"siamface enroll: {root} is not a folder", file=sys.stderr)
        return 2
    settings = get_settings()
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    bad_names = [p.name for p in folders if not SUBJECT_ID_RE.match(p.name)]
    if bad_names:
        print(f"siamface enroll: folder names that are not valid subject ids: {bad_names[:10]}", file=sys.stderr)
        return 2
    jobs = [
        (p.name, sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)) for p in folders
    ]
    total = sum(len(files) for _, files in jobs)
    resources = load_resources(settings)
    reasons: Counter[str] = Counter()
    rejected: list[str] = []
    enrolled = subjects = 0
    try:
        with tqdm(total=total, unit="img", desc="enrolling") as bar:
            for subject_id, files in jobs:
                # A batch per request's worth of images, so one huge folder is not held in memory at once.
                for start in range(0, len(files), settings.max_images_per_request):
                    chunk = files[start : start + settings.max_images_per_request]
                    uploads = []
                    for f in chunk:
                        size = f.stat().st_size
                        if size > settings.max_upload_bytes:
                            err = FileTooLarge(f"{f.name} is over {settings.max_upload_bytes} bytes")
                            uploads.append(Upload(f.name, error=err))
                        else:
                            uploads.append(Upload(f.name, f.read_bytes()))
                    try:
                        result = resources.service.enroll(subject_id, uploads, largest=args.largest)
                        enrolled += result.enrolled
                        subjects += int(result.created)
                        images = result.images
                    except EnrollmentRejected as e:
                        images = None
                        for f, d in zip(chunk, e.details, strict=True):
                            code = d["rejection"]["code"]
                            reasons[code] += 1
                            rejected.append(f"{subject_id}/{f.name}: {code}")
                    for f, im in zip(chunk, images or [], strict=False):
                        if im.rejection is not None:
                            reasons[im.rejection.code] += 1
                            rejected.append(f"{subject_id}/{f.name}: {im.rejection.code}")
                    bar.update(len(chunk))
    finally:
        resources.close()
    print(f"enrolled {enrolled} faces of {total} images; {subjects} new subjects ({len(jobs)} folders)")
    if reasons:
        print("rejected: " + ", ".join(f"{code} {n}" for code, n in reasons.most_common()))
        for line in rejected[: args.show]:
            print(f"  {line}")
        if len(rejected) > args.show:
            print(f"  ... and {len(rejected) - args.show} more")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="siamface", description="Face verification service (settings: SIAMFACE_*)")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="default: SIAMFACE_HOST (127.0.0.1)")
    serve.add_argument("--port", type=int, help="default: SIAMFACE_PORT (8000)")
    serve.set_defaults(func=_serve)
    enroll = sub.add_parser("enroll", help="bulk-enroll DIR/<subject_id>/<images>")
    enroll.add_argument("dir", help="a folder of subject folders")
    enroll.add_argument("--largest", action="store_true", help="use the largest face of photos with several")
    enroll.add_argument("--show", type=int, default=20, help="rejected files to list (default 20)")
    enroll.set_defaults(func=_enroll)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
