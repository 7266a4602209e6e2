/**
 * Charts are built as a small tree of plain objects first and turned into SVG elements last:
 * the tree is what the unit tests read (no DOM in Node), and the DOM is made with
 * createElementNS and text nodes only, never from markup, so no label can inject anything.
 */

export interface SvgNode {
  tag: string;
  attrs: Record<string, string | number>;
  children: Array<SvgNode | string>;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

export function svg(
  tag: string,
  attrs: Record<string, string | number | undefined> = {},
  ...children: Array<SvgNode | string | null | false>
): SvgNode {
  const kept: Record<string, string | number> = {};
  for (const [name, value] of Object.entries(attrs)) if (value !== undefined) kept[name] = value;
  return {
    tag,
    attrs: kept,
    children: children.filter((child): child is SvgNode | string => child !== null && child !== false),
  };
}

export function toElement(node: SvgNode): SVGElement {
  const element = document.createElementNS(SVG_NS, node.tag);
  for (const [name, value] of Object.entries(node.attrs)) element.setAttribute(name, String(value));
  for (const child of node.children) {
    element.appendChild(typeof child === 'string' ? document.createTextNode(child) : toElement(child));
  }
  return element;
}

/** Every node of the tree, depth first: what the tests search. */
export function* walk(node: SvgNode): Generator<SvgNode> {
  yield node;
  for (const child of node.children) if (typeof child !== 'string') yield* walk(child);
}

/** The text of a node and its descendants. */
export function textOf(node: SvgNode): string {
  return node.children.map((child) => (typeof child === 'string' ? child : textOf(child))).join('');
}
