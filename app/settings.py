"""The service's settings: environment variables prefixed `SIAMFACE_` (or a `.env` file), read once.

No module-level instance: `get_settings()` is a cached FastAPI dependency, and tests override it
(`app.dependency_overrides[get_settings]`) or pass `create_app(settings)`. Unsafe combinations are refused when
the server starts (`check_serving`), not when settings are read, so that `siamface enroll` (no HTTP, no keys)
works with the same variables.
"""

from __future__ import annotations

import hmac
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.artifact import ARTIFACTS_DIR
from model.preprocess import DEFAULT_MAX_PIXELS

MatchMode = Literal["faces", "mean", "both"]
IndexKind = Literal["flat", "hnsw", "ivf"]


class UnsafeSettingsError(ValueError):
    """The settings would serve an unprotected or impossible configuration."""


class Settings(BaseSettings):
    """Every knob of the service. Environment variable = `SIAMFACE_` + the field name in capitals."""

    model_config = SettingsConfigDict(env_prefix="SIAMFACE_", env_file=".env", extra="ignore", frozen=True)

    # Where things are.
    data_dir: Path = Field(Path("data"), description="Folder of the gallery (gallery.sqlite3 and its WAL).")
    artifact: Path = Field(ARTIFACTS_DIR / "faces", description="Model artifact folder (model.onnx + card.json).")
    database_url: SecretStr | None = Field(
        None,
        description="PostgreSQL gallery shared by several replicas (postgresql://user:password@host:port/db); "
        "unset: SQLite in data_dir. Secret: it may hold a password.",
    )
    sync_interval: float = Field(
        0.2,
        gt=0,
        le=60,
        description="Seconds between polls of the store's change log (writes made by other replicas or the CLI).",
    )

    # Access.
    api_keys: SecretStr = Field(
        SecretStr(""), description="Comma-separated API keys accepted in the X-API-Key header. Never logged."
    )
    dev_disable_auth: bool = Field(False, description="Development only: serve without API keys.")
    console: bool = Field(
        True,
        description="Serve the web console (static pages at /console/, / redirects there). Its API calls send a key "
        "like any client's; off: neither path exists.",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    # Limits on what a client may send.
    max_upload_bytes: int = Field(8 * 2**20, ge=1, description="Largest accepted image file, bytes.")
    max_request_bytes: int = Field(64 * 2**20, ge=1, description="Largest accepted request body, bytes.")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="Largest accepted image, width × height.")
    max_images_per_request: int = Field(16, ge=1, description="Most images one /enroll may carry.")
    max_faces_per_image: int = Field(16, ge=1, description="Most faces /identify?all_faces answers for.")
    max_top_k: int = Field(100, ge=1)
    max_metadata_bytes: int = Field(16 * 1024, ge=2)

    # The gallery.
    # "both" by default: with 2 to 5 faces per subject it identified best or within noise of the best on unseen
    # LFW people, "faces" never (bench/results/gallery_match.md).
    match: MatchMode = Field(
        "both",
        description="How a probe is compared with a subject of several faces: 'faces' (its closest enrolled face), "
        "'mean' (the subject's mean embedding) or 'both' (the closer of the two).",
    )
    index: IndexKind = Field("flat", description="FAISS index: 'flat' (exact), 'hnsw' or 'ivf' (approximate).")
    hnsw_m: int = Field(32, ge=4)
    hnsw_ef_construction: int = Field(80, ge=8)
    hnsw_ef_search: int = Field(64, ge=1)
    ivf_nlist: int = Field(0, ge=0, description="IVF lists; 0 picks about 4·√n (at most n/39) at each build.")
    ivf_nprobe: int = Field(0, ge=0, description="IVF lists searched per query; 0: a quarter, at least 16.")
    keep_crops: bool = Field(True, description="Store each enrolled face's aligned crop, so a new model can re-embed.")
    reembed: bool = Field(False, description="At start, re-embed a gallery made by another model from its crops.")

    # Compute.
    onnx_threads: int = Field(1, ge=0, description="ONNX Runtime intra-op threads per call (0: its default).")
    embed_concurrency: int = Field(2, ge=1, description="Image pipelines (decode → embed) running at once.")
    log_level: str = "info"

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value().strip():
            return None  # an empty variable means "unset"
        if not v.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("database_url must be a postgresql:// URL (leave it unset for SQLite)")
        return v

    @field_validator("artifact", "data_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

    def key_list(self) -> list[bytes]:
        """The accepted API keys as bytes (blank entries dropped)."""
        return [k.strip().encode() for k in self.api_keys.get_secret_value().split(",") if k.strip()]

    def key_accepted(self, given: str) -> bool:
        """Constant-time comparison against every key (no early exit, so timing tells nothing about which)."""
        given_b = given.encode()
        ok = False
        for key in self.key_list():
            ok |= hmac.compare_digest(given_b, key)
        return ok

    @property
    def auth_required(self) -> bool:
        return not self.dev_disable_auth

    @property
    def database_path(self) -> Path:
        return self.data_dir / "gallery.sqlite3"

    @property
    def store_backend(self) -> Literal["sqlite", "postgresql"]:
        """Which gallery store the settings select (never the URL itself: it may hold a password)."""
        return "postgresql" if self.database_url is not None else "sqlite"

    def check_serving(self) -> None:
        """Refuse to serve without API keys unless development mode says so explicitly."""
        if self.auth_required and not self.key_list():
            raise UnsafeSettingsError(
                "no API keys: set SIAMFACE_API_KEYS (comma-separated), "
                "or SIAMFACE_DEV_DISABLE_AUTH=true for development"
            )
        if self.max_upload_bytes > self.max_request_bytes:
            raise UnsafeSettingsError("SIAMFACE_MAX_UPLOAD_BYTES exceeds SIAMFACE_MAX_REQUEST_BYTES")


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use (a FastAPI dependency)."""
    return Settings()
