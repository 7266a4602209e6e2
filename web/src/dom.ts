/** A tiny element builder: enough DOM help to stay framework-free without string HTML (no injection). */

type Child = Node | string | null | undefined | false;
type Attributes = Record<string, string | number | boolean | null | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    element.setAttribute(name, value === true ? '' : String(value));
  }
  append(element, ...children);
  return element;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
  }
}

/** A polite live region: screen readers announce its text changes without stealing focus. */
export interface StatusLine {
  element: HTMLElement;
  info(message: string): void;
  error(message: string): void;
  clear(): void;
}

export function statusLine(testId?: string): StatusLine {
  const element = h('p', { class: 'status', role: 'status', 'aria-live': 'polite', 'data-testid': testId });
  const set = (message: string, isError: boolean) => {
    element.textContent = message;
    element.classList.toggle('error', isError);
  };
  return {
    element,
    info: (message) => set(message, false),
    error: (message) => set(message, true),
    clear: () => set('', false),
  };
}

let fieldCounter = 0;

/** A labelled form field; the label is a real <label for> so clicking it focuses the control. */
export function field(
  label: string,
  control: HTMLInputElement | HTMLSelectElement,
  hint?: string,
): HTMLElement {
  fieldCounter += 1;
  control.id ||= `field-${fieldCounter}`;
  const hintElement = hint ? h('span', { class: 'hint', id: `${control.id}-hint` }, hint) : null;
  if (hintElement) control.setAttribute('aria-describedby', hintElement.id);
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control, hintElement);
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Replaces a container's content (a sign-in form by the signed-in view, say) without losing
 * the keyboard user: when focus was inside the old content it moves to the new content's
 * first heading (or first control), instead of falling back to the page body.
 */
export function replaceContent(container: Element, ...children: Child[]): void {
  const hadFocus = container.contains(document.activeElement);
  container.replaceChildren();
  append(container, ...children);
  if (!hadFocus) return;
  const heading = container.querySelector<HTMLElement>('h1, h2, h3');
  if (heading) {
    if (!heading.hasAttribute('tabindex')) heading.setAttribute('tabindex', '-1');
    heading.focus();
    return;
  }
  container.querySelector<HTMLElement>('input, select, textarea, button, a[href]')?.focus();
}
