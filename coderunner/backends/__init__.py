"""Backends: where code runs (InProcess in this process, Docker containers, the InstaVM cloud or a remote server)."""
