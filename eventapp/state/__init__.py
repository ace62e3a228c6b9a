"""Keyed state: descriptors, handles, the store seam and its key layout."""
