"""The browser engine: Chromium driven by Playwright, beside the code engine.

``engine.py`` is the lifecycle (Chromium, the context pool, the session table, expiry) and the entry
point :meth:`~coderunner.engine.browser.engine.BrowserEngine.act`; ``actions.py`` has one handler per
:mod:`coderunner.browser.actions` type; ``navigation.py`` reads what a navigation did; ``errors.py``
translates Playwright's errors; ``_scripts.py`` is the JavaScript run in pages. The public face
(models, errors, actions, the capability protocols) is :mod:`coderunner.browser`.
"""
