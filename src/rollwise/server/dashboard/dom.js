// Building elements: h() for HTML, s() for SVG. Children may be strings, nodes, arrays or
// null (skipped), so a view reads as a tree. Styles come from app.css classes only: the page's
// Content-Security-Policy refuses inline style attributes.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(element, props, children) {
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.setAttribute("class", value);
    else if (name === "testid") element.setAttribute("data-testid", value);
    else if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : String(child));
  }
}

/** An HTML element: h("div", {class: "card"}, "text", h("b", {}, "bold")). */
export function h(tag, props, ...children) {
  return build(document.createElement(tag), props, children);
}

/** An SVG element, same shape as h(). */
export function s(tag, props, ...children) {
  return build(document.createElementNS(SVG_NS, tag), props, children);
}

/** Replace what a container shows, in one step (no empty frame in between). */
export function show(container, ...children) {
  const fragment = document.createDocumentFragment();
  append(fragment, children);
  container.replaceChildren(fragment);
}

/**
 * A region re-drawn only when its data changed: polling every second must not rebuild (and
 * so reset, scroll or flicker) what did not change.
 */
export class Region {
  constructor(element) {
    this.element = element;
    this.signature = null;
  }

  update(data, render) {
    const signature = JSON.stringify(data);
    if (signature === this.signature) return;
    this.signature = signature;
    show(this.element, render(data));
  }
}
