"""The REST and MCP server (`coderunner serve`)."""
