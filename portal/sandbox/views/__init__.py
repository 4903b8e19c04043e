"""Sandbox EHR HTTP endpoints."""
