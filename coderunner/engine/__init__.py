"""The execution engine: kernels per language, sessions, pool and policy."""
