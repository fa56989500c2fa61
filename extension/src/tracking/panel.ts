import { LabIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { actionButton, element, panelHeader } from '../dom';
import {
  HimaliaClient,
  IMetricHistory,
  IRun,
  IRunComparison,
  RunScope
} from '../handler';
import { formatValue, linePlot } from './plot';

/**
 * Three rising bars and a curve: runs and their metrics.
 */
const RUNS_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <rect x="3" y="14" width="4" height="7"/>
    <rect x="10" y="10" width="4" height="11"/>
    <rect x="17" y="5" width="4" height="16"/>
  </g>
  <path class="jp-icon3" fill="none" stroke="#616161" stroke-width="1.5" d="M3 9 L10 5 L17 3 L22 2"/>
</svg>`;

/**
 * The Runs panel's sidebar icon.
 */
export const runsIcon = new LabIcon({ name: 'himalia:runs', svgstr: RUNS_SVG });

/**
 * The most curves drawn for one selected run (its metrics, by key).
 */
export const MAX_PLOTS = 12;

/**
 * Options of the Runs panel.
 */
export interface IRunsPanelOptions {
  /** The REST client the panel reads runs through. */
  client: HimaliaClient;
  /** Deploy a run's model; without it, runs have no "Deploy…" action. */
  deploy?: (run: IRun) => void;
}

/**
 * Left-sidebar panel: the MLflow runs of the active notebook (or all of the user's), their
 * metric curves, and two runs compared side by side, each with a link into the MLflow UI.
 */
export class RunsPanel extends Widget {
  constructor(options: IRunsPanelOptions) {
    super();
    this._client = options.client;
    this._deploy = options.deploy ?? null;
    this.id = 'himalia-runs';
    this.addClass('jp-himalia-runs');
    this.title.icon = runsIcon;
    this.title.caption = 'Runs';

    const { header, refreshButton } = panelHeader('Runs', () => void this.refresh());
    this._refreshButton = refreshButton;

    const scopes = element('div', 'jp-himalia-scopes');
    scopes.setAttribute('role', 'group');
    scopes.setAttribute('aria-label', 'Which runs');
    for (const [scope, label] of [
      ['notebook', 'This notebook'],
      ['mine', 'All of mine']
    ] as [RunScope, string][]) {
      const button = element('button', 'jp-himalia-scope', label);
      button.dataset.scope = scope;
      button.addEventListener('click', () => this.setScope(scope));
      this._scopeButtons.push(button);
      scopes.appendChild(button);
    }

    this._context = element('div', 'jp-himalia-runs-context');
    this._state = element('div', 'jp-himalia-state');
    this._state.setAttribute('role', 'status');
    this._list = element('ul', 'jp-himalia-run-list');
    this._more = element('button', 'jp-Button jp-himalia-more', 'Load more');
    this._more.hidden = true;
    this._more.addEventListener('click', () => void this._load(true));
    this._detail = element('section', 'jp-himalia-run-detail');

    this.node.append(
      header,
      scopes,
      this._context,
      this._state,
      this._list,
      this._more,
      this._detail
    );
    this._showScope();
  }

  /**
   * The notebook whose runs "This notebook" lists (its path from the server's root), or null.
   */
  get notebook(): string | null {
    return this._notebook;
  }

  /**
   * Follow another notebook; the list is reloaded when it shows this notebook's runs.
   */
  setNotebook(path: string | null): void {
    if (path === this._notebook) {
      return;
    }
    this._notebook = path;
    if (this._scope === 'notebook') {
      this._reloadWhenVisible();
    } else {
      this._showContext();
    }
  }

  /**
   * Which runs are listed: the notebook's or all of the user's.
   */
  get scope(): RunScope {
    return this._scope;
  }

  setScope(scope: RunScope): void {
    if (scope === this._scope) {
      return;
    }
    this._scope = scope;
    this._showScope();
    this._reloadWhenVisible();
  }

  /**
   * Reload the first page of runs; failures are shown in the panel.
   */
  refresh(): Promise<void> {
    return this._load(false);
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.refresh();
  }

  private _reloadWhenVisible(): void {
    if (this.isVisible) {
      void this.refresh();
    } else {
      this._showContext();
    }
  }

  private _showScope(): void {
    for (const button of this._scopeButtons) {
      const pressed = button.dataset.scope === this._scope;
      button.setAttribute('aria-pressed', String(pressed));
      button.classList.toggle('jp-mod-active', pressed);
    }
    this._showContext();
  }

  private _showContext(): void {
    if (this._scope === 'mine') {
      this._context.textContent = 'All your runs, newest first.';
    } else if (this._notebook) {
      this._context.textContent = `Runs of ${this._notebook}`;
      this._context.title = this._notebook;
    } else {
      this._context.textContent = 'Open a notebook to see its runs.';
    }
  }

  private async _load(more: boolean): Promise<void> {
    const request = ++this._requests;
    this._showContext();
    if (!more) {
      this._runs = [];
      this._selected = [];
      this._pageToken = null;
      this._list.replaceChildren();
      this._detail.replaceChildren();
    }
    this._more.hidden = true;
    if (this._scope === 'notebook' && !this._notebook) {
      this._showState('', false);
      return;
    }
    this._refreshButton.disabled = true;
    this._showState('Loading…', false);
    try {
      const page = await this._client.runs({
        scope: this._scope,
        notebook: this._notebook ?? undefined,
        pageToken: more ? this._pageToken : null
      });
      if (request !== this._requests) {
        return;
      }
      this._runs.push(...page.runs);
      this._pageToken = page.next_page_token;
      for (const run of page.runs) {
        this._list.appendChild(this._renderRun(run));
      }
      this._more.hidden = this._pageToken === null;
      this._showState(this._runs.length === 0 ? 'No runs yet.' : '', false);
    } catch (error) {
      if (request === this._requests) {
        this._showState((error as Error).message, true);
      }
    } finally {
      if (request === this._requests) {
        this._refreshButton.disabled = false;
      }
    }
  }

  private _showState(text: string, isError: boolean): void {
    this._state.textContent = text;
    this._state.classList.toggle('jp-himalia-error', isError);
    this._state.hidden = text === '';
  }

  private _renderRun(run: IRun): HTMLLIElement {
    const row = element('li', 'jp-himalia-run');
    row.dataset.runId = run.run_id;

    const check = element('input', 'jp-himalia-run-select');
    check.type = 'checkbox';
    check.setAttribute('aria-label', `Select ${run.name}`);
    check.addEventListener('change', () => this._toggle(run, check.checked));

    const name = element('button', 'jp-himalia-run-name', run.name);
    name.title = `Show the metrics of ${run.name}`;
    name.addEventListener('click', () => this._select([run]));

    const status = element(
      'span',
      `jp-himalia-badge jp-himalia-run-status jp-himalia-status-${run.status.toLowerCase()}`,
      run.status.toLowerCase()
    );
    const started = element('time', 'jp-himalia-run-time', formatTime(run.start_time));
    if (run.start_time !== null) {
      started.dateTime = new Date(run.start_time).toISOString();
      started.title = new Date(run.start_time).toLocaleString();
    }

    const link = element('a', 'jp-himalia-mlflow-link', 'Open in MLflow');
    link.href = run.url;
    link.target = '_blank';
    link.rel = 'noopener noreferrer';

    const metrics = element('div', 'jp-himalia-run-metrics');
    for (const key of keyMetrics(run)) {
      const value = run.metrics[key];
      metrics.appendChild(
        element(
          'span',
          'jp-himalia-run-metric',
          `${key} ${value === null ? '—' : formatValue(value)}`
        )
      );
    }

    const top = element('div', 'jp-himalia-run-top');
    top.append(check, name, status);
    const bottom = element('div', 'jp-himalia-run-bottom');
    bottom.append(started, link);
    const deploy = this._deploy;
    if (deploy) {
      const button = actionButton('Deploy…', 'jp-himalia-run-deploy');
      button.title = `Serve the model of ${run.name} (runs:/${run.run_id}/model)`;
      button.addEventListener('click', () => deploy(run));
      bottom.appendChild(button);
    }
    row.append(top, metrics, bottom);
    return row;
  }

  private _toggle(run: IRun, checked: boolean): void {
    let selected = this._selected.filter(r => r.run_id !== run.run_id);
    if (checked) {
      // Two at most: a third replaces the one picked first.
      selected = [...selected, run].slice(-2);
    }
    this._select(selected);
  }

  private _select(runs: IRun[]): void {
    this._selected = runs;
    const ids = new Set(runs.map(r => r.run_id));
    for (const row of Array.from(
      this._list.querySelectorAll<HTMLLIElement>('.jp-himalia-run')
    )) {
      const on = ids.has(row.dataset.runId ?? '');
      row.classList.toggle('jp-mod-selected', on);
      const check = row.querySelector<HTMLInputElement>('.jp-himalia-run-select');
      if (check) {
        check.checked = on;
      }
    }
    const request = ++this._detailRequests;
    if (runs.length === 1) {
      void this._showCurves(runs[0], request);
    } else if (runs.length === 2) {
      void this._showComparison(runs[0], runs[1], request);
    } else {
      this._detail.replaceChildren();
    }
  }

  private async _showCurves(run: IRun, request: number): Promise<void> {
    const heading = element('h3', 'jp-himalia-detail-heading', `Metrics of ${run.name}`);
    const keys = Object.keys(run.metrics).sort().slice(0, MAX_PLOTS);
    if (keys.length === 0) {
      this._detail.replaceChildren(
        heading,
        element('p', 'jp-himalia-detail-note', 'This run has no metrics.')
      );
      return;
    }
    const loading = element('p', 'jp-himalia-detail-note', 'Loading curves…');
    this._detail.replaceChildren(heading, loading);
    const results = await Promise.allSettled(
      keys.map(key => this._client.metricHistory(run.run_id, key))
    );
    if (request !== this._detailRequests) {
      return;
    }
    const figures = results.map((result, i) =>
      result.status === 'fulfilled'
        ? renderCurve(result.value)
        : renderFailedCurve(keys[i], (result.reason as Error).message)
    );
    this._detail.replaceChildren(heading, ...figures);
  }

  private async _showComparison(a: IRun, b: IRun, request: number): Promise<void> {
    const heading = element('h3', 'jp-himalia-detail-heading', 'Compare');
    this._detail.replaceChildren(
      heading,
      element('p', 'jp-himalia-detail-note', 'Loading…')
    );
    try {
      const comparison = await this._client.compareRuns(a.run_id, b.run_id);
      if (request === this._detailRequests) {
        this._detail.replaceChildren(heading, ...renderComparison(comparison));
      }
    } catch (error) {
      if (request === this._detailRequests) {
        const note = element('p', 'jp-himalia-state jp-himalia-error', (error as Error).message);
        this._detail.replaceChildren(heading, note);
      }
    }
  }

  private _client: HimaliaClient;
  private _deploy: ((run: IRun) => void) | null;
  private _refreshButton: HTMLButtonElement;
  private _scopeButtons: HTMLButtonElement[] = [];
  private _context: HTMLDivElement;
  private _state: HTMLDivElement;
  private _list: HTMLUListElement;
  private _more: HTMLButtonElement;
  private _detail: HTMLElement;
  private _notebook: string | null = null;
  private _scope: RunScope = 'notebook';
  private _runs: IRun[] = [];
  private _selected: IRun[] = [];
  private _pageToken: string | null = null;
  private _requests = 0;
  private _detailRequests = 0;
}

/**
 * The metrics a run row shows: at most three, by key.
 */
export function keyMetrics(run: IRun): string[] {
  return Object.keys(run.metrics).sort().slice(0, 3);
}

function formatTime(millis: number | null): string {
  return millis === null
    ? ''
    : new Date(millis).toLocaleString(undefined, {
        dateStyle: 'short',
        timeStyle: 'short'
      });
}

function renderCurve(history: IMetricHistory): HTMLElement {
  const figure = element('figure', 'jp-himalia-curve');
  figure.dataset.metric = history.key;
  const last = history.history[history.history.length - 1];
  const caption = element('figcaption', '', history.key);
  if (last && last.value !== null) {
    caption.appendChild(
      element('span', 'jp-himalia-curve-last', ` ${formatValue(last.value)}`)
    );
  }
  figure.append(
    caption,
    linePlot(
      history.history.map(p => ({ x: p.step, y: p.value })),
      { label: history.key }
    )
  );
  return figure;
}

function renderFailedCurve(key: string, message: string): HTMLElement {
  const figure = element('figure', 'jp-himalia-curve');
  figure.dataset.metric = key;
  figure.append(
    element('figcaption', '', key),
    element('p', 'jp-himalia-state jp-himalia-error', message)
  );
  return figure;
}

function cell(row: HTMLTableRowElement, text: string, tag: 'td' | 'th' = 'td'): void {
  const node = element(tag, '', text);
  row.appendChild(node);
}

function renderComparison(comparison: IRunComparison): HTMLElement[] {
  const { a, b } = comparison;
  const names = element('p', 'jp-himalia-compare-names');
  for (const [label, run] of [
    ['A', a],
    ['B', b]
  ] as [string, IRun][]) {
    const link = element('a', 'jp-himalia-mlflow-link', `${label}: ${run.name}`);
    link.href = run.url;
    link.target = '_blank';
    link.rel = 'noopener noreferrer';
    names.appendChild(link);
  }

  const params = element('table', 'jp-himalia-compare jp-himalia-compare-params');
  params.createCaption().textContent = 'Params';
  const paramHead = params.createTHead().insertRow();
  for (const title of ['Param', 'A', 'B']) {
    cell(paramHead, title, 'th');
  }
  const paramBody = params.createTBody();
  for (const row of comparison.params) {
    const tr = paramBody.insertRow();
    tr.dataset.key = row.key;
    tr.dataset.diff = row.diff;
    tr.className = `jp-himalia-diff-${row.diff}`;
    if (row.diff !== 'same') {
      tr.title = row.diff === 'changed' ? 'changed' : row.diff.replace(/-/g, ' ');
    }
    cell(tr, row.key);
    cell(tr, row.a ?? '—');
    cell(tr, row.b ?? '—');
  }
  if (comparison.params.length === 0) {
    const td = paramBody.insertRow().insertCell();
    td.colSpan = 3;
    td.textContent = 'Neither run has params.';
  }

  const metrics = element('table', 'jp-himalia-compare jp-himalia-compare-metrics');
  metrics.createCaption().textContent = 'Metrics (latest)';
  const metricHead = metrics.createTHead().insertRow();
  for (const title of ['Metric', 'A', 'B']) {
    cell(metricHead, title, 'th');
  }
  const metricBody = metrics.createTBody();
  for (const row of comparison.metrics) {
    const tr = metricBody.insertRow();
    tr.dataset.key = row.key;
    cell(tr, row.key);
    cell(tr, row.a === null ? '—' : formatValue(row.a));
    cell(tr, row.b === null ? '—' : formatValue(row.b));
  }
  if (comparison.metrics.length === 0) {
    const td = metricBody.insertRow().insertCell();
    td.colSpan = 3;
    td.textContent = 'Neither run has metrics.';
  }
  return [names, params, metrics];
}
