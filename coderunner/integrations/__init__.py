"""Agent framework adapters built on the one ToolSpec list."""
