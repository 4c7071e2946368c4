"""Proposal post-processing shared by every proposer (like segment_anything/utils/amg.py)."""
