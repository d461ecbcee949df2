"""Tests of the behaviours that Ray programs rely on (issue 11)."""
