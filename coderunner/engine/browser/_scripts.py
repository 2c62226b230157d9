"""JavaScript the browser engine runs inside pages (extract_elements, extract_content, click, scroll)."""

from __future__ import annotations

# A CSS selector that matches exactly one element: an id, a distinctive attribute, else a path of
# :nth-of-type steps from the nearest ancestor with a unique id. Always verified with querySelectorAll.
_SELECTOR_FN = r"""
const __unique = (sel, el) => {
  try { const found = document.querySelectorAll(sel); return found.length === 1 && found[0] === el; }
  catch (e) { return false; }
};
// A CSS string literal: only backslashes, quotes and line breaks need escaping inside quotes.
const __q = (v) => '"' + v.replace(/[\\"]/g, '\\$&').replace(/\n/g, '\\a ') + '"';
const __selectorFor = (el) => {
  const tag = el.tagName.toLowerCase();
  if (el.id && __unique('#' + CSS.escape(el.id), el)) return '#' + CSS.escape(el.id);
  for (const attr of ['data-testid', 'data-test', 'data-qa', 'name', 'aria-label', 'placeholder', 'title', 'alt']) {
    const v = el.getAttribute(attr);
    if (v && v.length <= 200) {
      const sel = `${tag}[${attr}=${__q(v)}]`;
      if (__unique(sel, el)) return sel;
    }
  }
  if (tag === 'a') {
    const href = el.getAttribute('href');
    if (href && href.length <= 300) {
      const sel = `a[href=${__q(href)}]`;
      if (__unique(sel, el)) return sel;
    }
  }
  const parts = [];
  let node = el;
  while (node && node.nodeType === 1 && node !== document.documentElement) {
    if (node !== el && node.id && __unique('#' + CSS.escape(node.id), node)) {
      parts.unshift('#' + CSS.escape(node.id));
      break;
    }
    let part = node.tagName.toLowerCase();
    const parent = node.parentElement;
    if (parent) {
      const same = Array.from(parent.children).filter((c) => c.tagName === node.tagName);
      if (same.length > 1) part += `:nth-of-type(${same.indexOf(node) + 1})`;
    }
    parts.unshift(part);
    node = parent;
  }
  return parts.join(' > ');
};
const __visible = (el) => {
  const r = el.getBoundingClientRect();
  if (r.width <= 0 || r.height <= 0) return false;
  const s = getComputedStyle(el);
  return s.visibility !== 'hidden' && s.display !== 'none' && s.opacity !== '0';
};
const __squash = (t, max) => {
  const s = (t || '').replace(/\s+/g, ' ').trim();
  return s.length > max ? s.slice(0, max - 1) + '\u2026' : s;
};
"""

EXTRACT_ELEMENTS = (
    "(elements, [attributes, maxText]) => {"
    + _SELECTOR_FN
    + r"""
  const attr = (el, name) => {
    if (name === 'text') return __squash(el.innerText ?? el.textContent, maxText);
    if (name === 'value' && 'value' in el) return String(el.value);
    if ((name === 'href' || name === 'src') && typeof el[name] === 'string' && el.hasAttribute(name)) return el[name];
    return el.getAttribute(name);
  };
  return elements.map((el) => {
    const attrs = {};
    if (attributes && attributes.length) {
      for (const name of attributes) attrs[name] = attr(el, name);
    } else {
      for (const a of Array.from(el.attributes)) attrs[a.name] = a.value;
    }
    const text = __squash(el.innerText ?? el.textContent, maxText);
    return { tag: el.tagName.toLowerCase(), text, attributes: attrs };
  });
}"""
)
"""``locator.evaluate_all(EXTRACT_ELEMENTS, [attributes | None, max_text_chars])``."""

EXTRACT_CONTENT = (
    "([includeInteractive, includeAnchors, maxAnchors, maxChars, maxInteractive]) => {"
    + _SELECTOR_FN
    + r"""
  let truncated = false;
  const body = document.body;
  let root = document.querySelector('main, article, [role="main"]') || body;
  let text = root ? (root.innerText || '') : '';
  if (root !== body && body && text.trim().length < 200) text = body.innerText || '';
  text = text.replace(/[ \t\u00a0]+\n/g, '\n').replace(/\n{3,}/g, '\n\n').trim();
  if (text.length > maxChars) { text = text.slice(0, maxChars); truncated = true; }
  const result = {
    readable_content: { title: document.title || '', content: text, url: location.href },
    interactive_elements: [],
    content_anchors: [],
    truncated: false,
  };
  if (includeInteractive && body) {
    const q = 'a[href], button, input:not([type="hidden"]), select, textarea, summary, [role="button"], '
      + '[role="link"], [role="checkbox"], [role="tab"], [role="menuitem"], [contenteditable="true"], [onclick]';
    for (const el of body.querySelectorAll(q)) {
      if (!__visible(el)) continue;
      if (result.interactive_elements.length >= maxInteractive) { truncated = true; break; }
      const tag = el.tagName.toLowerCase();
      const label = el.innerText || el.value || el.getAttribute('aria-label') || el.getAttribute('placeholder')
        || el.getAttribute('title') || el.getAttribute('alt') || '';
      const isField = ['input', 'select', 'textarea'].includes(tag);
      result.interactive_elements.push({
        tag,
        selector: __selectorFor(el),
        text: tag === 'input' && el.type === 'password' ? '' : __squash(label, 100),
        type: (tag === 'input' ? (el.getAttribute('type') || 'text') : el.getAttribute('role')) || null,
        href: tag === 'a' ? el.href : null,
        name: isField ? (el.getAttribute('name') || null) : null,
        placeholder: el.getAttribute('placeholder'),
        disabled: !!el.disabled || el.getAttribute('aria-disabled') === 'true',
      });
    }
  }
  if (includeAnchors && body && maxAnchors > 0) {
    const seen = new Set();
    const q = 'h1, h2, h3, h4, h5, h6, p, li, a, button, label, td, th, dt, dd, figcaption, blockquote, '
      + 'summary, caption';
    for (const el of body.querySelectorAll(q)) {
      const snippet = __squash(el.innerText, 150);
      if (snippet.length < 2 || seen.has(snippet) || !__visible(el)) continue;
      if (result.content_anchors.length >= maxAnchors) { truncated = true; break; }
      seen.add(snippet);
      result.content_anchors.push({ text: snippet, selector: __selectorFor(el), tag: el.tagName.toLowerCase() });
    }
  }
  result.truncated = truncated;
  return result;
}"""
)
"""``page.evaluate(EXTRACT_CONTENT, [interactive?, anchors?, max_anchors, max_chars, max_interactive])``."""

OPENS_NEW_PAGE = """(el) => {
  const owner = el.closest('a[target], area[target], form[target]') || (el.form && el.form.target ? el.form : null);
  if (!owner) return false;
  const t = (owner.getAttribute('target') || '').toLowerCase();
  return !['', '_self', '_top', '_parent'].includes(t);
}"""
"""Whether clicking the element opens another page (a link or form with a target)."""

SCROLL_TO = "([x, y]) => { window.scrollTo(x, y); return [window.scrollX, window.scrollY]; }"
"""Scroll the window to absolute coordinates; returns where it ended up."""

SCROLL_POSITION = "() => [window.scrollX, window.scrollY]"
"""The window's scroll offsets."""
