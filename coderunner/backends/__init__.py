"""Backends: where code runs (InProcess, LocalDocker, InstaVM)."""
