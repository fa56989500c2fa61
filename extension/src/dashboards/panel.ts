import { Dialog, showDialog } from '@jupyterlab/apputils';
import { LabIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { actionButton, element, panelHeader, reconcile } from '../dom';
import { IWhoAmI } from '../handler';
import { DashboardsClient, IDashboard, IDashboardShare } from './client';

/**
 * A chart on a board: a published dashboard.
 */
const DASHBOARDS_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <path class="jp-icon3" fill="#616161" d="M3 3h18v18H3V3zm2 2v14h14V5H5zm2 10h2v2H7v-2zm4-4h2v6h-2v-6zm4-4h2v10h-2V7z"/>
</svg>`;

/**
 * The Dashboards panel's sidebar icon, also the "Publish as dashboard" command's.
 */
export const dashboardsIcon = new LabIcon({
  name: 'himalia:dashboards',
  svgstr: DASHBOARDS_SVG
});

/**
 * Options of the Dashboards panel.
 */
export interface IDashboardsPanelOptions {
  client: DashboardsClient;
  /** Who the user is: the owner of a dashboard shares and unpublishes it. */
  whoami: () => Promise<IWhoAmI>;
}

/**
 * "data from today 02:00", "data from yesterday 18:30", "data from 3 Mar 2031, 02:00": when
 * the linked job's last successful run finished, in the browser's zone, from `now`.
 */
export function freshnessText(iso: string, now: Date = new Date()): string {
  const when = new Date(iso);
  const time = when.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  const day = (d: Date): number =>
    new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  const days = Math.round((day(now) - day(when)) / 86_400_000);
  if (days === 0) {
    return `data from today ${time}`;
  }
  if (days === 1) {
    return `data from yesterday ${time}`;
  }
  const date = when.toLocaleDateString(undefined, {
    day: 'numeric',
    month: 'short',
    year: 'numeric'
  });
  return `data from ${date}, ${time}`;
}

/**
 * Who may open a dashboard, in words.
 */
export function audienceText(share: IDashboardShare): string {
  const parts: string[] = [];
  if (share.viewers) {
    parts.push('all viewers');
  }
  if (share.users.length > 0) {
    parts.push(share.users.join(', '));
  }
  if (share.groups.length > 0) {
    parts.push(`groups ${share.groups.join(', ')}`);
  }
  return parts.length > 0 ? `Shared with ${parts.join('; ')}` : 'Not shared';
}

/**
 * A comma-separated field as a list of its non-empty words.
 */
export function words(text: string): string[] {
  return text
    .split(',')
    .map(word => word.trim())
    .filter(word => word !== '');
}

/**
 * What the panel keeps of one dashboard's row.
 */
interface IDashboardRow {
  node: HTMLLIElement;
  open: HTMLAnchorElement;
  version: HTMLElement;
  owner: HTMLElement;
  views: HTMLElement;
  freshness: HTMLElement;
  audience: HTMLElement;
  actions: HTMLElement;
  share: ShareForm;
  error: HTMLElement;
  dashboard: IDashboard;
}

/**
 * Sidebar panel: the user's dashboards and those shared with them, each with its title (a
 * link that opens it), version, views, the freshness of its data and who may open it. The
 * owner shares or unpublishes their own.
 */
export class DashboardsPanel extends Widget {
  constructor(options: IDashboardsPanelOptions) {
    super();
    this._client = options.client;
    this._whoami = options.whoami;
    this.id = 'himalia-dashboards';
    this.addClass('jp-himalia-dashboards');
    this.title.icon = dashboardsIcon;
    this.title.caption = 'Dashboards';

    const { header } = panelHeader('Dashboards', () => void this.refresh());
    this._state = element('div', 'jp-himalia-state');
    this._state.setAttribute('role', 'status');
    this._list = element('ul', 'jp-himalia-deployment-list jp-himalia-dashboard-list');
    this._list.setAttribute('aria-label', 'Dashboards');
    this.node.append(header, this._state, this._list);
  }

  /**
   * Ask for the dashboards again; a failure is shown in the panel.
   */
  async refresh(): Promise<void> {
    const request = ++this._requests;
    if (this._rows.size === 0) {
      this._showState('Loading…', false);
    }
    try {
      const [dashboards] = await Promise.all([
        this._client.dashboards(),
        this._me ? null : this._learnWhoIAm()
      ]);
      if (request === this._requests && !this.isDisposed) {
        this._show(dashboards);
      }
    } catch (error) {
      if (request === this._requests && !this.isDisposed) {
        this._showState((error as Error).message, true);
      }
    }
  }

  /**
   * Reload, then bring one dashboard's row into view.
   */
  async reveal(name: string): Promise<void> {
    await this.refresh();
    const row = this._rows.get(name);
    if (row) {
      row.node.scrollIntoView({ block: 'nearest' });
      row.open.focus();
    }
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.refresh();
  }

  private async _learnWhoIAm(): Promise<void> {
    try {
      this._me = await this._whoami();
    } catch {
      // Without it no row offers Share or Unpublish; the platform would refuse them anyway.
      this._me = null;
    }
  }

  private _showState(text: string, isError: boolean): void {
    this._state.textContent = text;
    this._state.classList.toggle('jp-himalia-error', isError);
    this._state.hidden = text === '';
  }

  private _show(dashboards: IDashboard[]): void {
    reconcile(this._list, dashboards, this._rows, {
      key: dashboard => dashboard.name,
      make: dashboard => this._makeRow(dashboard),
      update: (row, dashboard) => this._updateRow(row, dashboard)
    });
    this._showState(
      dashboards.length === 0
        ? 'No dashboards yet. Publish a notebook: right-click it, “Publish as dashboard…”, ' +
            'or run %publish NAME in it.'
        : '',
      false
    );
  }

  private _makeRow(dashboard: IDashboard): IDashboardRow {
    const node = element('li', 'jp-himalia-deployment jp-himalia-dashboard');
    node.dataset.name = dashboard.name;
    const open = element('a', 'jp-himalia-deployment-name jp-himalia-dashboard-open');
    open.target = '_blank';
    open.rel = 'noopener';
    const version = element('span', 'jp-himalia-badge jp-himalia-dashboard-version');
    const top = element('div', 'jp-himalia-deployment-top');
    top.append(open, version);
    const owner = element('span', 'jp-himalia-dashboard-owner');
    const views = element('span', 'jp-himalia-dashboard-views');
    const freshness = element('span', 'jp-himalia-badge jp-himalia-dashboard-freshness');
    const facts = element('div', 'jp-himalia-dashboard-facts');
    facts.append(owner, views, freshness);
    const audience = element('div', 'jp-himalia-dashboard-audience');
    const error = element('div', 'jp-himalia-state jp-himalia-error');
    error.setAttribute('role', 'alert');

    const row: IDashboardRow = {
      node,
      open,
      version,
      owner,
      views,
      freshness,
      audience,
      actions: element('div', 'jp-himalia-dashboard-actions'),
      share: new ShareForm(),
      error,
      dashboard
    };
    const shareButton = actionButton('Share…', 'jp-himalia-dashboard-share');
    shareButton.addEventListener('click', () => row.share.toggle(row.dashboard.share));
    const unpublish = actionButton('Unpublish', 'jp-himalia-dashboard-unpublish');
    unpublish.addEventListener('click', () => void this._unpublish(row));
    row.actions.append(shareButton, unpublish);
    row.share.onSave = share =>
      this._act(row, async () => {
        this._updateRow(row, await this._client.update(row.dashboard.name, { share }));
        row.share.close();
      });
    node.append(top, facts, audience, row.actions, row.share.node, error);
    return row;
  }

  private _updateRow(row: IDashboardRow, dashboard: IDashboard): void {
    row.dashboard = dashboard;
    row.open.href = dashboard.url;
    row.open.textContent = dashboard.title || dashboard.name;
    row.open.title = `Open ${dashboard.name} in a new tab`;
    row.version.textContent = `v${dashboard.version}`;
    const mine = this._me !== null && dashboard.owner === this._me.name;
    row.owner.textContent = mine ? 'yours' : `by ${dashboard.owner}`;
    row.views.textContent = `${dashboard.views} ${dashboard.views === 1 ? 'view' : 'views'}`;
    row.freshness.hidden = dashboard.job_id === null;
    row.freshness.textContent = dashboard.freshness
      ? freshnessText(dashboard.freshness.finished_at)
      : 'no data yet';
    row.freshness.classList.toggle('jp-himalia-ok', dashboard.freshness !== null);
    row.freshness.title = dashboard.job_name
      ? `From the last successful run of job “${dashboard.job_name}”`
      : '';
    row.audience.textContent = audienceText(dashboard.share);
    row.actions.hidden = !mine;
    row.node.dataset.mine = String(mine);
  }

  /**
   * Run an owner's action on a row, its failure shown under the row.
   */
  private _act(row: IDashboardRow, action: () => Promise<void>): void {
    row.error.textContent = '';
    action().catch(error => {
      row.error.textContent = (error as Error).message;
    });
  }

  private async _unpublish(row: IDashboardRow): Promise<void> {
    const name = row.dashboard.name;
    const answer = await showDialog({
      title: `Unpublish “${row.dashboard.title || name}”?`,
      body: 'Its link stops opening for everyone it is shared with.',
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Unpublish' })]
    });
    if (!answer.button.accept) {
      return;
    }
    this._act(row, async () => {
      await this._client.unpublish(name);
      row.node.remove();
      this._rows.delete(name);
      if (this._rows.size === 0) {
        this._showState('No dashboards yet.', false);
      }
    });
  }

  private _client: DashboardsClient;
  private _whoami: () => Promise<IWhoAmI>;
  private _me: IWhoAmI | null = null;
  private _state: HTMLDivElement;
  private _list: HTMLUListElement;
  private _rows = new Map<string, IDashboardRow>();
  private _requests = 0;
}

/**
 * A row's sharing form: people, hub groups and all viewers; Save replaces the dashboard's
 * sharing with it.
 */
class ShareForm {
  constructor() {
    this.node = element('form', 'jp-himalia-dashboard-share-form');
    this.node.hidden = true;
    this._users = textField('Users');
    this._groups = textField('Groups');
    this._viewers = element('input');
    this._viewers.type = 'checkbox';
    const viewers = element('label', 'jp-himalia-dashboard-viewers');
    viewers.append(this._viewers, ' Everyone with the viewer role');
    const save = element('button', 'jp-Button jp-mod-styled jp-mod-accept', 'Save');
    save.type = 'submit';
    const cancel = actionButton('Cancel', 'jp-himalia-dashboard-share-cancel');
    cancel.addEventListener('click', () => this.close());
    const buttons = element('div', 'jp-himalia-dashboard-share-buttons');
    buttons.append(save, cancel);
    this.node.append(this._users.label, this._groups.label, viewers, buttons);
    this.node.addEventListener('submit', event => {
      event.preventDefault();
      this.onSave({
        users: words(this._users.input.value),
        groups: words(this._groups.input.value),
        viewers: this._viewers.checked
      });
    });
  }

  readonly node: HTMLFormElement;

  /** Called with the sharing the form describes when it is submitted. */
  onSave: (share: IDashboardShare) => void = () => undefined;

  toggle(share: IDashboardShare): void {
    if (!this.node.hidden) {
      this.close();
      return;
    }
    this._users.input.value = share.users.join(', ');
    this._groups.input.value = share.groups.join(', ');
    this._viewers.checked = share.viewers;
    this.node.hidden = false;
    this._users.input.focus();
  }

  close(): void {
    this.node.hidden = true;
  }

  private _users: { label: HTMLLabelElement; input: HTMLInputElement };
  private _groups: { label: HTMLLabelElement; input: HTMLInputElement };
  private _viewers: HTMLInputElement;
}

/**
 * A labelled text input for comma-separated names.
 */
function textField(text: string): { label: HTMLLabelElement; input: HTMLInputElement } {
  const label = element('label', 'jp-himalia-dashboard-field');
  const input = element('input', 'jp-mod-styled');
  input.type = 'text';
  input.placeholder = 'comma-separated';
  input.spellcheck = false;
  label.append(element('span', '', text), input);
  return { label, input };
}
