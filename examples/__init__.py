"""Runnable FastAPI applications that use insightdb (run them from the repository root)."""
