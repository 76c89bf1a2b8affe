"""Checkers for the exercises of chapter 05 (the Hindi-digits experiment)."""

from __future__ import annotations
