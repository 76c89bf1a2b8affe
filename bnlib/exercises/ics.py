"""Checkers for the exercises of chapter 01 (internal covariate shift)."""

from __future__ import annotations
