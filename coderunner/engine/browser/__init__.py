"""The browser engine: Chromium driven by Playwright, beside the code engine (public face: coderunner.browser)."""
