"""Checkers for the exercises of chapter 03 (inference-time statistics)."""

from __future__ import annotations
