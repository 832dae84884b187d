"""The FastAPI verification service (enroll / verify / identify). Built in a later issue; imports `model/` only."""
