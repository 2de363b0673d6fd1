"""Tests of automel.heads."""
