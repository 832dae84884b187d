"""siamface's service: enroll faces, verify (1:1) and identify (1:N) photos against them.

A FastAPI app (`app.main.create_app`) over a face model artifact (`model/artifacts/<name>`, read with ONNX
Runtime) and a durable gallery (SQLite, the source of truth, with a FAISS index rebuilt from it at start).
Imports `model/` only, never `training/` or torch. Settings and the API: app/README.md.
"""
