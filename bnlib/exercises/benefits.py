"""Checkers for the exercises of chapter 06 (the claimed benefits)."""

from __future__ import annotations
