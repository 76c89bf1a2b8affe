"""Checkers for the exercises of chapter 04 (layer, group and instance norm)."""

from __future__ import annotations
