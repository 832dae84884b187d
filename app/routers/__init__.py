"""One router per resource: enroll, verify, identify, subjects, and the system endpoints."""
