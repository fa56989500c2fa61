/**
 * Small DOM helpers shared by the himalia panels, which build their nodes without a framework.
 */

import { refreshIcon } from '@jupyterlab/ui-components';

/**
 * A new element with its class names and text.
 */
export function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/**
 * A panel's header: its title and a Refresh button that calls `refresh`.
 */
export function panelHeader(
  title: string,
  refresh: () => void
): { header: HTMLElement; refreshButton: HTMLButtonElement } {
  const header = element('header', 'jp-himalia-header');
  const refreshButton = element('button', 'jp-Button jp-mod-minimal jp-himalia-refresh');
  refreshButton.title = 'Refresh';
  refreshButton.setAttribute('aria-label', 'Refresh');
  refreshButton.appendChild(refreshIcon.element({ tag: 'span' }));
  refreshButton.addEventListener('click', refresh);
  header.append(element('h2', '', title), refreshButton);
  return { header, refreshButton };
}

/**
 * A small text button of a panel's row (`jp-himalia-action`), with extra class names.
 */
export function actionButton(label: string, className: string): HTMLButtonElement {
  const node = element(
    'button',
    `jp-Button jp-mod-minimal jp-himalia-action ${className}`,
    label
  );
  node.type = 'button';
  return node;
}

/**
 * Show `items` in `container`, in order, each by its view in `views` (by key): views of new
 * items are made, those of the others updated in place, those of items gone removed. Nodes are
 * moved only when out of place, so focus and a pressed button survive a refresh.
 */
export function reconcile<T, K, V extends { node: HTMLElement }>(
  container: HTMLElement,
  items: T[],
  views: Map<K, V>,
  how: {
    key: (item: T) => K;
    make: (item: T) => V;
    update: (view: V, item: T) => void;
  }
): void {
  const seen = new Set<K>();
  items.forEach((item, index) => {
    const key = how.key(item);
    seen.add(key);
    let view = views.get(key);
    if (!view) {
      view = how.make(item);
      views.set(key, view);
    }
    how.update(view, item);
    if (container.children[index] !== view.node) {
      container.insertBefore(view.node, container.children[index] ?? null);
    }
  });
  for (const [key, view] of views) {
    if (!seen.has(key)) {
      view.node.remove();
      views.delete(key);
    }
  }
}
