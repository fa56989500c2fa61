import { LabIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { element, panelHeader } from './dom';
import { HimaliaClient, IHealth, IStatus, IWhoAmI } from './handler';

/**
 * Himalia is a moon of Jupiter: a small body beside a ringed planet.
 */
const MOON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <circle cx="10" cy="13" r="6"/>
    <circle cx="19.5" cy="5" r="2.5"/>
  </g>
</svg>`;

/**
 * The himalia sidebar icon.
 */
export const himaliaIcon = new LabIcon({
  name: 'himalia:moon',
  svgstr: MOON_SVG
});

/**
 * Options of the himalia sidebar.
 */
export interface IHimaliaSidebarOptions {
  /**
   * The REST client the panel reads its status through.
   */
  client: HimaliaClient;
}

/**
 * Left-sidebar panel: who the user is, their platform roles and the health of each service.
 */
export class HimaliaSidebar extends Widget {
  constructor(options: IHimaliaSidebarOptions) {
    super();
    this._client = options.client;
    this.id = 'himalia-sidebar';
    this.addClass('jp-himalia-sidebar');
    this.title.icon = himaliaIcon;
    this.title.caption = 'himalia';

    const { header, refreshButton } = panelHeader('himalia', () => void this.refresh());
    this._refreshButton = refreshButton;

    this._state = element('div', 'jp-himalia-state');
    this._state.setAttribute('role', 'status');
    this._content = element('div', 'jp-himalia-content');

    this.node.append(header, this._state, this._content);
  }

  /**
   * Fetch the status again and redraw the panel; failures are shown in the panel.
   */
  async refresh(): Promise<void> {
    const request = ++this._requests;
    this._refreshButton.disabled = true;
    this._showState('Loading…', false);
    try {
      const status = await this._client.status();
      if (request === this._requests) {
        this._render(status);
      }
    } catch (error) {
      if (request === this._requests) {
        this._content.replaceChildren();
        this._showState((error as Error).message, true);
      }
    } finally {
      if (request === this._requests) {
        this._refreshButton.disabled = false;
      }
    }
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.refresh();
  }

  private _showState(text: string, isError: boolean): void {
    this._state.textContent = text;
    this._state.classList.toggle('jp-himalia-error', isError);
    this._state.hidden = text === '';
  }

  private _render(status: IStatus): void {
    this._showState('', false);
    this._content.replaceChildren(
      renderIdentity(status.whoami),
      renderHealth(status.health)
    );
  }

  private _client: HimaliaClient;
  private _refreshButton: HTMLButtonElement;
  private _state: HTMLDivElement;
  private _content: HTMLDivElement;
  private _requests = 0;
}

function renderIdentity(whoami: IWhoAmI): HTMLElement {
  const section = element('section', 'jp-himalia-identity');
  const user = element('div', 'jp-himalia-field');
  user.append(
    element('span', 'jp-himalia-label', 'User'),
    element('span', 'jp-himalia-user', whoami.name)
  );
  const roles = element('div', 'jp-himalia-field');
  const roleList = element('span', 'jp-himalia-roles');
  if (whoami.roles.length === 0) {
    roleList.textContent = 'no platform role';
  }
  for (const role of whoami.roles) {
    roleList.appendChild(element('span', 'jp-himalia-role', role));
  }
  roles.append(element('span', 'jp-himalia-label', 'Roles'), roleList);
  section.append(user, roles);
  return section;
}

function renderHealth(health: IHealth): HTMLElement {
  const section = element('section', 'jp-himalia-health');
  const heading = element('h3', 'jp-himalia-health-heading', 'Services ');
  heading.appendChild(stateBadge(health.ok));
  const table = element('table', 'jp-himalia-services');
  const head = table.createTHead().insertRow();
  head.append(element('th', '', 'Service'), element('th', '', 'State'));
  const body = table.createTBody();
  const names = Object.keys(health.services).sort();
  for (const name of names) {
    const service = health.services[name];
    const row = body.insertRow();
    row.dataset.service = name;
    row.title = service.detail ?? '';
    row.insertCell().textContent = name;
    row.insertCell().appendChild(stateBadge(service.ok));
  }
  if (names.length === 0) {
    const cell = body.insertRow().insertCell();
    cell.colSpan = 2;
    cell.textContent = 'No services reported.';
  }
  section.append(heading, table);
  return section;
}

function stateBadge(ok: boolean): HTMLElement {
  return element(
    'span',
    `jp-himalia-badge ${ok ? 'jp-himalia-ok' : 'jp-himalia-down'}`,
    ok ? 'ok' : 'down'
  );
}
