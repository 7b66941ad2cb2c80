"""Playbooks: YAML read within limits, validated, expanded into trial specs."""
