import { Dialog, showDialog } from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { LabIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { actionButton, element, panelHeader, reconcile } from '../dom';
import {
  HimaliaClient,
  IApiKey,
  IDeployment,
  IDeploymentMetrics,
  IDeploymentVersion
} from '../handler';
import { formatWhen } from '../jobs/panel';
import { formatValue } from '../tracking/plot';
import { ITimeSeries, timePlot } from './chart';

/**
 * A package on a stand: a model served.
 */
const DEPLOYMENTS_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <path class="jp-icon3" fill="#616161" d="M12 1 4 5v8l8 4 8-4V5l-8-4zm0 2.2L17.5 6 12 8.8 6.5 6 12 3.2zM6 7.6l5 2.5v4.7l-5-2.5V7.6zm7 7.2v-4.7l5-2.5v4.7l-5 2.5z"/>
  <path class="jp-icon3" fill="#616161" d="M3 20h18v2H3z"/>
</svg>`;

/**
 * The Deployments panel's sidebar icon.
 */
export const deploymentsIcon = new LabIcon({
  name: 'himalia:deployments',
  svgstr: DEPLOYMENTS_SVG
});

/**
 * How often the panel asks again while it is shown, in ms.
 */
export const POLL_INTERVAL = 5000;

/**
 * The window of the traffic plots, in minutes.
 */
export const METRICS_MINUTES = 60;

/**
 * How many of a deployment's newest versions are listed.
 */
export const MAX_VERSIONS = 10;

/**
 * How many colours the versions' curves and traffic shares cycle through (`series-0..5`).
 */
const SERIES_COLOURS = 6;

/**
 * Options of the Deployments panel.
 */
export interface IDeploymentsPanelOptions {
  /** The REST client the panel reads deployments through. */
  client: HimaliaClient;
  /** Show a widget (a version's logs) in the main area. */
  open: (widget: Widget) => void;
}

/**
 * What the panel keeps of one deployment's row in the list.
 */
interface IDeploymentRow {
  node: HTMLLIElement;
  name: HTMLButtonElement;
  health: HTMLElement;
  summary: HTMLElement;
}

/**
 * Sidebar panel: the user's model deployments, and for the one selected its versions (state,
 * why one failed), the traffic split, requests and latency per version over the last hour, a
 * version's logs, Promote / Rollback / Undeploy, and its API keys. Asked again every few
 * seconds while it is shown.
 */
export class DeploymentsPanel extends Widget {
  constructor(options: IDeploymentsPanelOptions) {
    super();
    this._client = options.client;
    this._open = options.open;
    this.id = 'himalia-deployments';
    this.addClass('jp-himalia-deployments');
    this.title.icon = deploymentsIcon;
    this.title.caption = 'Deployments';

    const { header } = panelHeader('Deployments', () => void this.refresh());

    this._state = element('div', 'jp-himalia-state');
    this._state.setAttribute('role', 'status');
    this._list = element('ul', 'jp-himalia-deployment-list');
    this._list.setAttribute('aria-label', 'Deployments');
    this._detail = element('section', 'jp-himalia-deployment-detail');
    this.node.append(header, this._state, this._list, this._detail);
    this.node.dataset.polling = 'false';
  }

  /**
   * Reload the deployments, and the selected one's traffic and keys; failures are shown in the
   * panel. While the panel is shown, this runs again every {@link POLL_INTERVAL} ms.
   */
  async refresh(): Promise<void> {
    const request = ++this._requests;
    this._stopPolling();
    if (this._rows.size === 0) {
      this._showState('Loading…', false);
    }
    try {
      const deployments = await this._client.deployments();
      if (request !== this._requests || this.isDisposed) {
        return;
      }
      this._showList(deployments);
      this._showState(
        deployments.length === 0
          ? 'No deployments yet. Deploy a model from a run in the Runs panel.'
          : '',
        false
      );
      const view = this._view;
      if (view) {
        const current = deployments.find(d => d.name === view.name);
        if (current) {
          view.show(current);
          await view.loadTrafficAndKeys();
        } else {
          this._select(null);
        }
      }
    } catch (error) {
      if (request === this._requests) {
        this._showState((error as Error).message, true);
      }
    } finally {
      if (request === this._requests) {
        this._pollSoon();
      }
    }
  }

  /**
   * Reload, then show a deployment (one just deployed) in detail.
   */
  async reveal(name: string): Promise<void> {
    if (this._view?.name !== name) {
      this._select(name);
    }
    await this.refresh();
    this._rows.get(name)?.node.scrollIntoView({ block: 'nearest' });
  }

  dispose(): void {
    this._stopPolling();
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.refresh();
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this._stopPolling();
  }

  private _showState(text: string, isError: boolean): void {
    this._state.textContent = text;
    this._state.classList.toggle('jp-himalia-error', isError);
    this._state.hidden = text === '';
  }

  private _showList(deployments: IDeployment[]): void {
    this._deployments = deployments;
    reconcile(this._list, deployments, this._rows, {
      key: deployment => deployment.name,
      make: deployment => this._makeRow(deployment),
      update: (row, deployment) => updateRow(row, deployment)
    });
    this._markSelected();
  }

  private _makeRow(deployment: IDeployment): IDeploymentRow {
    const node = element('li', 'jp-himalia-deployment');
    node.dataset.name = deployment.name;
    const name = element('button', 'jp-himalia-deployment-name', deployment.name);
    name.type = 'button';
    name.title = `Show ${deployment.name}: versions, traffic, keys`;
    name.addEventListener('click', () => {
      if (this._view?.name !== deployment.name) {
        this._select(deployment.name);
        void this.refresh();
      }
    });
    const health = element('span', 'jp-himalia-badge jp-himalia-deployment-health');
    const top = element('div', 'jp-himalia-deployment-top');
    top.append(name, health);
    const summary = element('div', 'jp-himalia-deployment-summary');
    node.append(top, summary);
    return { node, name, health, summary };
  }

  private _select(name: string | null): void {
    this._view?.dispose();
    this._view =
      name === null
        ? null
        : new DeploymentView(name, this._client, {
            open: this._open,
            changed: () => void this.refresh(),
            removed: () => {
              this._select(null);
              void this.refresh();
            }
          });
    const known = this._deployments.find(d => d.name === name);
    if (this._view && known) {
      this._view.show(known);
    }
    this._detail.replaceChildren(...(this._view ? [this._view.node] : []));
    this._markSelected();
  }

  private _markSelected(): void {
    for (const [name, row] of this._rows) {
      const on = name === this._view?.name;
      row.node.classList.toggle('jp-mod-selected', on);
      row.name.setAttribute('aria-pressed', String(on));
    }
  }

  private _pollSoon(): void {
    this._stopPolling();
    if (this.isDisposed || !this.isVisible) {
      return;
    }
    this.node.dataset.polling = 'true';
    this._pollTimer = window.setTimeout(() => {
      this._pollTimer = 0;
      void this.refresh();
    }, POLL_INTERVAL);
  }

  private _stopPolling(): void {
    window.clearTimeout(this._pollTimer);
    this._pollTimer = 0;
    this.node.dataset.polling = 'false';
  }

  private _client: HimaliaClient;
  private _open: (widget: Widget) => void;
  private _state: HTMLDivElement;
  private _list: HTMLUListElement;
  private _detail: HTMLElement;
  private _rows = new Map<string, IDeploymentRow>();
  private _deployments: IDeployment[] = [];
  private _view: DeploymentView | null = null;
  private _pollTimer = 0;
  private _requests = 0;
}

function updateRow(row: IDeploymentRow, deployment: IDeployment): void {
  setHealth(row.health, deployment);
  const live = deployment.versions.filter(v => v.traffic > 0);
  row.summary.textContent = [
    live.map(v => `v${v.version} ${v.traffic}%`).join(' · ') || 'no traffic',
    deployment.owner
  ].join(' — ');
}

function setHealth(node: HTMLElement, deployment: IDeployment): void {
  node.className = `jp-himalia-badge jp-himalia-deployment-health jp-himalia-health-${deployment.health}`;
  node.textContent = deployment.health;
  node.title = `Health of ${deployment.name}`;
}

/**
 * What a deployment's detail tells its panel.
 */
interface IDeploymentViewHooks {
  open: (widget: Widget) => void;
  /** The deployment changed here (promoted, rolled back): reload. */
  changed: () => void;
  /** The deployment was undeployed. */
  removed: () => void;
}

/**
 * One deployment in detail. Its nodes live as long as it is selected and are updated in
 * place, so a refresh neither moves a button under the pointer nor clears the key being
 * labelled or the new key shown once.
 */
class DeploymentView {
  constructor(
    readonly name: string,
    private _client: HimaliaClient,
    private _hooks: IDeploymentViewHooks
  ) {
    this.node = element('div', 'jp-himalia-deployment-view');
    this.node.dataset.name = name;

    const heading = element('h3', 'jp-himalia-detail-heading', name);
    this._health = element('span', 'jp-himalia-badge jp-himalia-deployment-health');
    heading.append(' ', this._health);
    this._endpoint = element('code', 'jp-himalia-deployment-endpoint');

    this._promote = actionButton('Promote', 'jp-himalia-deployment-promote');
    this._rollback = actionButton('Rollback', 'jp-himalia-deployment-rollback');
    const undeploy = actionButton('Undeploy', 'jp-himalia-deployment-undeploy');
    const actions = element('div', 'jp-himalia-deployment-actions');
    actions.append(this._promote, this._rollback, undeploy);
    this._promote.addEventListener('click', () => void this._confirmPromote());
    this._rollback.addEventListener('click', () => void this._confirmRollback());
    undeploy.addEventListener('click', () => void this._confirmUndeploy());

    this._error = element('div', 'jp-himalia-state jp-himalia-error');
    this._error.setAttribute('role', 'alert');
    this._error.hidden = true;

    this._traffic = element('div', 'jp-himalia-traffic');
    this._traffic.setAttribute('role', 'img');
    this._versions = element('ul', 'jp-himalia-version-list');
    this._versions.setAttribute('aria-label', `Versions of ${name}`);
    this._olderVersions = element('p', 'jp-himalia-note');

    this._metrics = element('section', 'jp-himalia-deployment-metrics');
    this._keys = new KeysView(name, _client);

    this.node.append(
      heading,
      this._endpoint,
      actions,
      this._error,
      subheading('Traffic'),
      this._traffic,
      subheading('Versions'),
      this._versions,
      this._olderVersions,
      subheading(`Last ${METRICS_MINUTES} minutes`),
      this._metrics,
      this._keys.node
    );
  }

  readonly node: HTMLDivElement;

  /**
   * Show the deployment as the platform last described it.
   */
  show(deployment: IDeployment): void {
    this._deployment = deployment;
    setHealth(this._health, deployment);
    this._endpoint.textContent = `POST ${endpointUrl(deployment.url)}`;
    this._endpoint.title = 'Where requests go: MLflow scoring JSON in, predictions out';

    const canary = canaryOf(deployment);
    this._promote.disabled = this._busy || canary === null;
    this._promote.title = canary
      ? `Give version ${canary.canary.version} all the traffic`
      : 'There is no canary to promote.';
    const rollback = rollbackPlan(deployment);
    this._rollback.disabled = this._busy || rollback === null;
    this._rollback.title = rollback ?? 'There is nothing to roll back.';

    renderTraffic(this._traffic, deployment);
    const shown = deployment.versions.slice(0, MAX_VERSIONS);
    reconcile(this._versions, shown, this._versionRows, {
      key: version => version.version,
      make: version => this._makeVersionRow(version),
      update: (row, version) => updateVersionRow(row, version)
    });
    const older = deployment.versions.length - shown.length;
    this._olderVersions.textContent = older > 0 ? `and ${older} older` : '';
    this._olderVersions.hidden = older === 0;
  }

  /**
   * Reload the traffic plots and the API keys.
   */
  async loadTrafficAndKeys(): Promise<void> {
    await Promise.allSettled([this._loadMetrics(), this._keys.load()]);
  }

  dispose(): void {
    this._disposed = true;
  }

  private async _loadMetrics(): Promise<void> {
    try {
      const metrics = await this._client.deploymentMetrics(this.name, METRICS_MINUTES);
      if (!this._disposed) {
        this._metrics.replaceChildren(...renderMetrics(metrics));
      }
    } catch (error) {
      if (!this._disposed) {
        this._metrics.replaceChildren(
          element('p', 'jp-himalia-state jp-himalia-error', (error as Error).message)
        );
      }
    }
  }

  private _makeVersionRow(version: IDeploymentVersion): IVersionRow {
    const node = element('li', 'jp-himalia-version');
    node.dataset.version = String(version.version);
    const number = element('span', 'jp-himalia-version-number', `v${version.version}`);
    const state = element('span', 'jp-himalia-badge jp-himalia-version-state');
    const traffic = element('span', 'jp-himalia-version-traffic');
    const logs = actionButton('Logs', 'jp-himalia-version-logs');
    logs.title = `The build and serve logs of version ${version.version}`;
    logs.addEventListener('click', () => this._openLogs(version.version));
    const top = element('div', 'jp-himalia-version-top');
    top.append(number, state, traffic, logs);
    const model = element('code', 'jp-himalia-version-model');
    const made = element('div', 'jp-himalia-version-made');
    const reason = element('div', 'jp-himalia-version-reason');
    node.append(top, model, made, reason);
    return { node, state, traffic, model, made, reason };
  }

  private _openLogs(version: number): void {
    const id = `himalia-deployment-logs-${this.name}-${version}`;
    let widget = this._opened.get(id);
    if (!widget || widget.isDisposed) {
      widget = new DeploymentLogs(this._client, this.name, version);
      this._opened.set(id, widget);
    }
    this._hooks.open(widget);
  }

  private async _confirmPromote(): Promise<void> {
    const canary = this._deployment ? canaryOf(this._deployment) : null;
    if (!canary) {
      return;
    }
    const answer = await showDialog({
      title: `Promote version ${canary.canary.version} of “${this.name}”?`,
      body:
        `Version ${canary.canary.version} takes all the traffic; version ` +
        `${canary.stable.version} (now ${canary.stable.traffic}%) is retired.`,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Promote' })]
    });
    if (answer.button.accept) {
      await this._act(() => this._client.promote(this.name));
    }
  }

  private async _confirmRollback(): Promise<void> {
    const body = this._deployment ? rollbackPlan(this._deployment) : null;
    if (!body) {
      return;
    }
    const answer = await showDialog({
      title: `Roll back “${this.name}”?`,
      body,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Roll back' })]
    });
    if (answer.button.accept) {
      await this._act(() => this._client.rollback(this.name));
    }
  }

  private async _confirmUndeploy(): Promise<void> {
    const answer = await showDialog({
      title: `Undeploy “${this.name}”?`,
      body: 'Every version stops serving; its endpoint and API keys stop working.',
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Undeploy' })]
    });
    if (!answer.button.accept) {
      return;
    }
    this._setBusy(true);
    try {
      await this._client.undeploy(this.name);
      this._hooks.removed();
    } catch (error) {
      this._showError((error as Error).message);
      this._setBusy(false);
    }
  }

  private async _act(work: () => Promise<IDeployment>): Promise<void> {
    this._setBusy(true);
    try {
      this._showError('');
      const deployment = await work();
      this._setBusy(false);
      if (!this._disposed) {
        this.show(deployment);
      }
      this._hooks.changed();
    } catch (error) {
      this._setBusy(false);
      this._showError((error as Error).message);
    }
  }

  private _setBusy(busy: boolean): void {
    this._busy = busy;
    this.node.classList.toggle('jp-mod-busy', busy);
    if (this._deployment) {
      this.show(this._deployment);
    }
  }

  private _showError(message: string): void {
    this._error.textContent = message;
    this._error.hidden = message === '';
  }

  private _deployment: IDeployment | null = null;
  private _busy = false;
  private _disposed = false;
  private _health: HTMLElement;
  private _endpoint: HTMLElement;
  private _promote: HTMLButtonElement;
  private _rollback: HTMLButtonElement;
  private _error: HTMLDivElement;
  private _traffic: HTMLDivElement;
  private _versions: HTMLUListElement;
  private _olderVersions: HTMLParagraphElement;
  private _versionRows = new Map<number, IVersionRow>();
  private _metrics: HTMLElement;
  private _keys: KeysView;
  private _opened = new Map<string, Widget>();
}

/**
 * What the detail keeps of one version's row.
 */
interface IVersionRow {
  node: HTMLLIElement;
  state: HTMLElement;
  traffic: HTMLElement;
  model: HTMLElement;
  made: HTMLElement;
  reason: HTMLElement;
}

function updateVersionRow(row: IVersionRow, version: IDeploymentVersion): void {
  row.node.dataset.state = version.state;
  row.state.className = `jp-himalia-badge jp-himalia-version-state jp-himalia-version-${version.state}`;
  row.state.textContent = version.state;
  row.traffic.textContent = `${version.traffic}%`;
  row.traffic.title = `Share of requests: ${version.traffic}%`;
  row.model.textContent = version.model_uri;
  row.model.title = version.bento_tag ? `Bento ${version.bento_tag}` : '';
  row.made.textContent = `by ${version.created_by}, ${formatWhen(version.created_at)}`;
  row.reason.textContent = version.reason ?? '';
  row.reason.hidden = !version.reason;
  row.reason.classList.toggle('jp-himalia-error', version.state === 'failed');
}

/**
 * The API keys of a deployment: made here (the whole key shown once), listed by prefix,
 * revoked here.
 */
class KeysView {
  constructor(
    readonly name: string,
    private _client: HimaliaClient
  ) {
    this.node = element('section', 'jp-himalia-keys');
    this._label = element('input', 'jp-mod-styled jp-himalia-key-label');
    this._label.placeholder = 'Label: who or what uses it';
    this._label.setAttribute('aria-label', 'Label of the new key');
    const create = actionButton('Create key', 'jp-himalia-key-create');
    const form = element('form', 'jp-himalia-key-form');
    form.append(this._label, create);
    form.addEventListener('submit', event => {
      event.preventDefault();
      void this._create();
    });
    create.type = 'submit';

    this._fresh = element('div', 'jp-himalia-new-key');
    this._fresh.setAttribute('role', 'status');
    this._fresh.hidden = true;
    this._freshValue = element('code', 'jp-himalia-new-key-value');
    const copy = actionButton('Copy', 'jp-himalia-new-key-copy');
    copy.addEventListener('click', () => void this._copy());
    const done = actionButton('Done', 'jp-himalia-new-key-done');
    done.addEventListener('click', () => this._forget());
    const freshActions = element('div', 'jp-himalia-new-key-actions');
    freshActions.append(copy, done);
    this._fresh.append(
      element('p', '', 'Copy this key now: it is not shown again.'),
      this._freshValue,
      freshActions
    );

    this._error = element('div', 'jp-himalia-state jp-himalia-error');
    this._error.hidden = true;
    this._list = element('ul', 'jp-himalia-key-list');
    this._list.setAttribute('aria-label', `API keys of ${name}`);
    this._none = element('p', 'jp-himalia-note', 'No API keys yet.');
    this._none.hidden = true;
    this.node.append(subheading('API keys'), form, this._fresh, this._error, this._list, this._none);
  }

  readonly node: HTMLElement;

  async load(): Promise<void> {
    try {
      this._show(await this._client.apiKeys(this.name));
    } catch (error) {
      this._showError((error as Error).message);
    }
  }

  private _show(keys: IApiKey[]): void {
    this._showError('');
    reconcile(this._list, keys, this._rows, {
      key: key => key.id,
      make: key => this._makeRow(key),
      update: (row, key) => updateKeyRow(row, key)
    });
    this._none.hidden = keys.length > 0;
  }

  private _makeRow(key: IApiKey): IKeyRow {
    const node = element('li', 'jp-himalia-key');
    node.dataset.keyId = String(key.id);
    const prefix = element('code', 'jp-himalia-key-prefix', `${key.prefix}…`);
    const label = element('span', 'jp-himalia-key-name');
    const revoked = element('span', 'jp-himalia-badge jp-himalia-key-revoked', 'revoked');
    const revoke = actionButton('Revoke', 'jp-himalia-key-revoke');
    revoke.addEventListener('click', () => void this._revoke(key));
    const top = element('div', 'jp-himalia-key-top');
    top.append(prefix, label, revoked, revoke);
    const used = element('div', 'jp-himalia-key-used');
    node.append(top, used);
    return { node, label, revoked, revoke, used };
  }

  private async _create(): Promise<void> {
    const label = this._label.value.trim();
    try {
      const made = await this._client.createApiKey(this.name, label);
      this._label.value = '';
      this._freshValue.textContent = made.key;
      this._fresh.hidden = false;
      this._fresh.dataset.keyId = String(made.id);
      await this.load();
    } catch (error) {
      this._showError((error as Error).message);
    }
  }

  private async _copy(): Promise<void> {
    const key = this._freshValue.textContent ?? '';
    try {
      await navigator.clipboard.writeText(key);
    } catch {
      // No clipboard access (a page served over plain HTTP): select it for Ctrl+C instead.
      window.getSelection()?.selectAllChildren(this._freshValue);
    }
  }

  private _forget(): void {
    this._freshValue.textContent = '';
    this._fresh.hidden = true;
  }

  private async _revoke(key: IApiKey): Promise<void> {
    const answer = await showDialog({
      title: `Revoke key ${key.prefix}…?`,
      body: `Requests with “${key.label || key.prefix}” are refused from now on.`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Revoke' })]
    });
    if (!answer.button.accept) {
      return;
    }
    try {
      await this._client.revokeApiKey(this.name, key.id);
      await this.load();
    } catch (error) {
      this._showError((error as Error).message);
    }
  }

  private _showError(message: string): void {
    this._error.textContent = message;
    this._error.hidden = message === '';
  }

  private _label: HTMLInputElement;
  private _fresh: HTMLDivElement;
  private _freshValue: HTMLElement;
  private _error: HTMLDivElement;
  private _list: HTMLUListElement;
  private _none: HTMLParagraphElement;
  private _rows = new Map<number, IKeyRow>();
}

/**
 * What the keys view keeps of one key's row.
 */
interface IKeyRow {
  node: HTMLLIElement;
  label: HTMLElement;
  revoked: HTMLElement;
  revoke: HTMLButtonElement;
  used: HTMLElement;
}

function updateKeyRow(row: IKeyRow, key: IApiKey): void {
  row.node.classList.toggle('jp-mod-revoked', key.revoked_at !== null);
  row.label.textContent = key.label;
  row.revoked.hidden = key.revoked_at === null;
  row.revoke.hidden = key.revoked_at !== null;
  row.used.textContent = [
    `made by ${key.created_by}, ${formatWhen(key.created_at)}`,
    key.last_used_at ? `last used ${formatWhen(key.last_used_at)}` : 'never used'
  ].join(' · ');
}

/**
 * A version's build log, then its serve log, as text; "Reload" asks again.
 */
export class DeploymentLogs extends Widget {
  constructor(
    private _client: HimaliaClient,
    readonly deployment: string,
    readonly version: number
  ) {
    super();
    this.id = `himalia-deployment-logs-${deployment}-${version}`;
    this.addClass('jp-himalia-deployment-logs');
    this.title.label = `Logs of ${deployment} v${version}`;
    this.title.icon = deploymentsIcon;
    this.title.closable = true;
    const reload = actionButton('Reload', 'jp-himalia-deployment-logs-reload');
    reload.addEventListener('click', () => void this.load());
    this._text = element('pre', 'jp-himalia-deployment-logs-text', 'Loading the logs…');
    this.node.append(reload, this._text);
    void this.load();
  }

  async load(): Promise<void> {
    try {
      const text = await this._client.deploymentLogs(this.deployment, this.version);
      this._text.textContent = text || 'No logs yet.';
      this._text.classList.remove('jp-himalia-error');
    } catch (error) {
      this._text.textContent = (error as Error).message;
      this._text.classList.add('jp-himalia-error');
    }
  }

  private _text: HTMLPreElement;
}

/**
 * The canary of a deployment (the newest version taking traffic while an older one takes the
 * rest) and that older one; null when one version takes it all.
 */
export function canaryOf(
  deployment: IDeployment
): { canary: IDeploymentVersion; stable: IDeploymentVersion } | null {
  const live = deployment.versions.filter(v => v.traffic > 0 && v.state !== 'retired');
  return live.length >= 2 ? { canary: live[0], stable: live[1] } : null;
}

/**
 * What rolling a deployment back does, by the platform's rule: a version still being prepared
 * is dropped; else a canary is retired; else the newest earlier version that served is started
 * again and takes the traffic once healthy. Null when there is nothing to roll back.
 */
export function rollbackPlan(deployment: IDeployment): string | null {
  const versions = deployment.versions;
  const serving = versions.filter(v => v.state === 'serving');
  const busy = versions.find(v => v.state === 'building' || v.state === 'starting');
  if (busy) {
    return (
      `Version ${busy.version} is dropped before it serves (it is ${busy.state}).` +
      (serving.length ? ` Version ${serving[0].version} keeps its traffic.` : '')
    );
  }
  if (serving.length > 1) {
    return (
      `The canary, version ${serving[0].version}, is retired; version ` +
      `${serving[1].version} takes all the traffic again.`
    );
  }
  const current = serving.length ? serving[0].version : null;
  const earlier = versions.find(
    v =>
      v.state === 'retired' &&
      v.started_at !== null &&
      v.bento_tag !== null &&
      (current === null || v.version < current)
  );
  if (!earlier) {
    return null;
  }
  return (
    `Version ${earlier.version} is started again and takes all the traffic once it is ` +
    'healthy' +
    (current === null ? '.' : `; version ${current} serves until then and is then retired.`)
  );
}

/**
 * Where a deployment takes requests: its `/models/<name>/` path below the hub's base URL
 * (JupyterLab's hub prefix without `hub/`), then `predict`.
 */
export function endpointUrl(
  path: string,
  hubPrefix = PageConfig.getOption('hubPrefix'),
  origin = window.location.origin
): string {
  const base = hubPrefix ? hubPrefix.replace(/hub\/?$/, '') : '/';
  return URLExt.join(origin, base, path, 'predict');
}

function seriesClass(version: number): string {
  return `jp-himalia-series-${version % SERIES_COLOURS}`;
}

function subheading(text: string): HTMLElement {
  return element('h4', 'jp-himalia-deployment-subheading', text);
}

/**
 * The traffic split as one bar: a share per version that takes traffic, as wide as its percent.
 */
function renderTraffic(bar: HTMLElement, deployment: IDeployment): void {
  const live = deployment.versions.filter(v => v.traffic > 0);
  bar.replaceChildren(
    ...live
      .slice()
      .reverse()
      .map(version => {
        const share = element(
          'span',
          `jp-himalia-traffic-share ${seriesClass(version.version)}`,
          `v${version.version} ${version.traffic}%`
        );
        share.dataset.version = String(version.version);
        share.dataset.traffic = String(version.traffic);
        share.style.width = `${version.traffic}%`;
        share.title = `Version ${version.version}: ${version.traffic}% of requests`;
        return share;
      })
  );
  if (live.length === 0) {
    bar.appendChild(element('span', 'jp-himalia-traffic-none', 'no traffic'));
  }
  bar.setAttribute(
    'aria-label',
    live.length
      ? `Traffic: ${live.map(v => `version ${v.version} ${v.traffic}%`).join(', ')}`
      : 'No version takes traffic'
  );
}

/**
 * Totals by version, and requests and p50/p95 latency per minute, one curve per version.
 */
function renderMetrics(metrics: IDeploymentMetrics): HTMLElement[] {
  const versions = Object.keys(metrics.totals)
    .map(Number)
    .sort((a, b) => b - a);
  if (metrics.buckets.length === 0 && versions.length === 0) {
    return [element('p', 'jp-himalia-note', `No requests in the last ${METRICS_MINUTES} minutes.`)];
  }
  const table = element('table', 'jp-himalia-deployment-totals');
  table.createCaption().textContent = 'Totals; latency in ms';
  const head = table.createTHead().insertRow();
  for (const title of ['', 'Requests', 'Errors', 'p50', 'p95']) {
    head.appendChild(element('th', '', title));
  }
  const body = table.createTBody();
  for (const version of versions) {
    const totals = metrics.totals[String(version)];
    const row = body.insertRow();
    row.dataset.version = String(version);
    for (const value of [
      `v${version}`,
      String(totals.count),
      String(totals.errors),
      totals.p50_ms === null ? '—' : formatValue(totals.p50_ms),
      totals.p95_ms === null ? '—' : formatValue(totals.p95_ms)
    ]) {
      row.insertCell().textContent = value;
    }
  }

  const byVersion = new Map<number, typeof metrics.buckets>();
  for (const bucket of metrics.buckets) {
    byVersion.set(bucket.version, [...(byVersion.get(bucket.version) ?? []), bucket]);
  }
  const curves = (
    measure: 'count' | 'p50_ms' | 'p95_ms',
    label: string,
    dashed: boolean
  ): ITimeSeries[] =>
    Array.from(byVersion, ([version, buckets]) => ({
      label: `v${version} ${label}`,
      className: `${seriesClass(version)}${dashed ? ' jp-mod-dashed' : ''}`,
      data: { version: String(version), measure },
      points: buckets
        .map(b => ({ x: Date.parse(b.at), y: b[measure] }))
        .sort((a, b) => a.x - b.x)
    }));

  const legend = element('div', 'jp-himalia-legend');
  for (const version of Array.from(byVersion.keys()).sort((a, b) => b - a)) {
    const item = element('span', `jp-himalia-legend-item ${seriesClass(version)}`, `v${version}`);
    item.dataset.version = String(version);
    legend.appendChild(item);
  }

  const requests = chart('requests', 'Requests per minute', [
    timePlot(curves('count', 'requests', false), { label: 'Requests per minute' })
  ]);
  const latency = chart('latency', 'Latency, ms: p50 solid, p95 dashed', [
    timePlot([...curves('p50_ms', 'p50', false), ...curves('p95_ms', 'p95', true)], {
      label: 'Latency in ms, p50 and p95'
    })
  ]);
  return [table, legend, requests, latency];
}

function chart(metric: string, caption: string, content: Element[]): HTMLElement {
  const figure = element('figure', 'jp-himalia-deployment-chart');
  figure.dataset.metric = metric;
  figure.append(element('figcaption', '', caption), ...content);
  return figure;
}
