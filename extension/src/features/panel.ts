import { LabIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { element, panelHeader, reconcile } from '../dom';
import { formatWhen } from '../jobs/panel';
import { formatValue } from '../tracking/plot';
import {
  FeaturesClient,
  IFeatureCatalog,
  IFeatureEntity,
  IFeatureStatistics,
  IFeatureView,
  IFeatureViewDetail,
  IMaterialization
} from './client';
import { histogramPlot } from './histogram';

/**
 * A table whose first column is a key: features by entity.
 */
const FEATURES_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <path class="jp-icon3" fill="#616161" d="M3 4h18v16H3V4zm2 2v3h4V6H5zm6 0v3h8V6h-8zm-6 5v3h4v-3H5zm6 0v3h8v-3h-8zm-6 5v2h4v-2H5zm6 0v2h8v-2h-8z"/>
</svg>`;

/**
 * The Features panel's sidebar icon.
 */
export const featuresIcon = new LabIcon({
  name: 'himalia:features',
  svgstr: FEATURES_SVG
});

/**
 * How long the search box waits for typing to pause before it asks, in ms.
 */
export const SEARCH_DELAY = 300;

/**
 * Options of the Features panel.
 */
export interface IFeaturesPanelOptions {
  /** The REST client the panel reads the catalog through. */
  client: FeaturesClient;
}

/**
 * What the panel keeps of one feature view's row in the list.
 */
interface IViewRow {
  node: HTMLLIElement;
  name: HTMLButtonElement;
  owner: HTMLElement;
  summary: HTMLElement;
  freshness: HTMLElement;
}

/**
 * What the panel keeps of one entity's row.
 */
interface IEntityRow {
  node: HTMLLIElement;
  keys: HTMLElement;
  about: HTMLElement;
}

/**
 * Sidebar panel: the feature catalog. A search box narrows the feature views (and entities) to
 * those matching every word; each view says whose it is, what it is about and how fresh it is.
 * The one selected shows its definition, per-feature statistics with a histogram of each
 * number, its freshness and its materializations.
 */
export class FeaturesPanel extends Widget {
  constructor(options: IFeaturesPanelOptions) {
    super();
    this._client = options.client;
    this.id = 'himalia-features';
    this.addClass('jp-himalia-features');
    this.title.icon = featuresIcon;
    this.title.caption = 'Features';

    const { header } = panelHeader('Features', () => void this.refresh());

    this._search = element('input', 'jp-mod-styled jp-himalia-features-search');
    this._search.type = 'search';
    this._search.placeholder = 'Search: name, description, owner, tags, features';
    this._search.setAttribute('aria-label', 'Search feature views');
    this._search.addEventListener('input', () => this._searchSoon());
    this._search.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        window.clearTimeout(this._searchTimer);
        void this.refresh();
      }
    });

    this._state = element('div', 'jp-himalia-state');
    this._state.setAttribute('role', 'status');
    this._list = element('ul', 'jp-himalia-feature-list');
    this._list.setAttribute('aria-label', 'Feature views');
    this._entitiesHeading = subheading('Entities');
    this._entities = element('ul', 'jp-himalia-entity-list');
    this._entities.setAttribute('aria-label', 'Entities');
    this._entitiesHeading.hidden = this._entities.hidden = true;
    this._detail = element('section', 'jp-himalia-feature-detail');
    this.node.append(
      header,
      this._search,
      this._state,
      this._list,
      this._entitiesHeading,
      this._entities,
      this._detail
    );
  }

  /**
   * Ask for the catalog again (with the search box's words), and for the selected view's
   * detail; failures, a viewer's refusal included, are shown in the panel. The list carries
   * the words it shows the views for as `data-query`.
   */
  async refresh(): Promise<void> {
    const request = ++this._requests;
    window.clearTimeout(this._searchTimer);
    const words = this._search.value.trim();
    if (this._rows.size === 0) {
      this._showState('Loading…', false);
    }
    try {
      const catalog = await this._client.catalog(words);
      if (request !== this._requests || this.isDisposed) {
        return;
      }
      this._showCatalog(catalog, words);
    } catch (error) {
      if (request === this._requests && !this.isDisposed) {
        this._showCatalog({ views: [], entities: [], registry_version: '' }, words);
        this._showState((error as Error).message, true);
        this._select(null);
      }
      return;
    }
    await this._view?.load();
  }

  /**
   * Reload, then show a feature view in detail.
   */
  async reveal(name: string): Promise<void> {
    if (this._view?.name !== name) {
      this._select(name);
    }
    await this.refresh();
    this._rows.get(name)?.node.scrollIntoView({ block: 'nearest' });
  }

  dispose(): void {
    window.clearTimeout(this._searchTimer);
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.refresh();
  }

  private _searchSoon(): void {
    window.clearTimeout(this._searchTimer);
    this._searchTimer = window.setTimeout(() => void this.refresh(), SEARCH_DELAY);
  }

  private _showState(text: string, isError: boolean): void {
    this._state.textContent = text;
    this._state.classList.toggle('jp-himalia-error', isError);
    this._state.hidden = text === '';
  }

  private _showCatalog(catalog: IFeatureCatalog, words: string): void {
    const now = Date.now();
    reconcile(this._list, catalog.views, this._rows, {
      key: view => view.name,
      make: view => this._makeRow(view),
      update: (row, view) => updateRow(row, view, now)
    });
    reconcile(this._entities, catalog.entities, this._entityRows, {
      key: entity => entity.name,
      make: entity => makeEntityRow(entity),
      update: (row, entity) => updateEntityRow(row, entity)
    });
    this._entitiesHeading.hidden = this._entities.hidden = catalog.entities.length === 0;
    this._list.dataset.query = words;
    this._markSelected();
    if (catalog.views.length > 0) {
      this._showState('', false);
    } else if (words) {
      this._showState(`No feature view matches “${words}”.`, false);
    } else {
      this._showState(
        'No feature views yet. Define one in a notebook with ' +
          'himalia.sdk.features.apply([entity, feature_view]).',
        false
      );
    }
  }

  private _makeRow(view: IFeatureView): IViewRow {
    const node = element('li', 'jp-himalia-feature-view');
    node.dataset.name = view.name;
    const name = element('button', 'jp-himalia-feature-view-name', view.name);
    name.type = 'button';
    name.title = `Show ${view.name}: statistics, freshness, materializations`;
    name.addEventListener('click', () => {
      if (this._view?.name !== view.name) {
        this._select(view.name);
        void this._view?.load();
      }
    });
    const owner = element('span', 'jp-himalia-feature-view-owner');
    const top = element('div', 'jp-himalia-feature-view-top');
    top.append(name, owner);
    const summary = element('div', 'jp-himalia-feature-view-summary');
    const freshness = element('div', 'jp-himalia-feature-view-freshness');
    node.append(top, summary, freshness);
    return { node, name, owner, summary, freshness };
  }

  private _select(name: string | null): void {
    this._view?.dispose();
    this._view = name === null ? null : new FeatureViewDetail(name, this._client);
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

  private _client: FeaturesClient;
  private _search: HTMLInputElement;
  private _state: HTMLDivElement;
  private _list: HTMLUListElement;
  private _entitiesHeading: HTMLElement;
  private _entities: HTMLUListElement;
  private _detail: HTMLElement;
  private _rows = new Map<string, IViewRow>();
  private _entityRows = new Map<string, IEntityRow>();
  private _view: FeatureViewDetail | null = null;
  private _searchTimer = 0;
  private _requests = 0;
}

function updateRow(row: IViewRow, view: IFeatureView, now: number): void {
  row.owner.textContent = view.owner;
  row.owner.title = `Defined by ${view.owner}`;
  row.summary.textContent = [
    view.entities.join(', ') || 'no entity',
    plural(view.features.length, 'feature'),
    ...(view.rows === null ? [] : [plural(view.rows, 'row')])
  ].join(' · ');
  row.summary.title = view.description;
  row.freshness.textContent = freshnessOf(view, now).join(' · ');
  row.freshness.title = freshnessTitle(view);
}

function makeEntityRow(entity: IFeatureEntity): IEntityRow {
  const node = element('li', 'jp-himalia-entity');
  node.dataset.name = entity.name;
  const top = element('div', 'jp-himalia-entity-top');
  const keys = element('code', 'jp-himalia-entity-keys');
  top.append(element('span', 'jp-himalia-entity-name', entity.name), keys);
  const about = element('div', 'jp-himalia-entity-about');
  node.append(top, about);
  return { node, keys, about };
}

function updateEntityRow(row: IEntityRow, entity: IFeatureEntity): void {
  row.keys.textContent = entity.join_keys.join(', ');
  row.keys.title = `Join key${entity.join_keys.length === 1 ? '' : 's'}, ${entity.value_type}`;
  row.about.textContent = [entity.description, entity.owner].filter(Boolean).join(' — ');
}

/**
 * One feature view in detail, asked for when selected and at each refresh of the panel.
 */
class FeatureViewDetail {
  constructor(
    readonly name: string,
    private _client: FeaturesClient
  ) {
    this.node = element('div', 'jp-himalia-feature-view-detail');
    this.node.dataset.name = name;
    this._error = element('div', 'jp-himalia-state jp-himalia-error');
    this._error.setAttribute('role', 'alert');
    this._error.hidden = true;
    this._body = element('div', 'jp-himalia-feature-view-body');
    this._body.append(element('p', 'jp-himalia-note', 'Loading…'));
    this.node.append(
      element('h3', 'jp-himalia-detail-heading', name),
      this._error,
      this._body
    );
  }

  readonly node: HTMLDivElement;

  /**
   * Ask for the view again and show it; a failure is shown above what was shown before.
   */
  async load(): Promise<void> {
    try {
      const view = await this._client.view(this.name);
      if (!this._disposed) {
        this._error.hidden = true;
        this._body.replaceChildren(...renderView(view, Date.now()));
        this._loaded = true;
      }
    } catch (error) {
      if (!this._disposed) {
        this._error.textContent = (error as Error).message;
        this._error.hidden = false;
        if (!this._loaded) {
          this._body.replaceChildren();
        }
      }
    }
  }

  dispose(): void {
    this._disposed = true;
  }

  private _error: HTMLDivElement;
  private _body: HTMLDivElement;
  private _loaded = false;
  private _disposed = false;
}

/**
 * A view's definition, freshness, statistics and histograms, and materializations.
 */
function renderView(view: IFeatureViewDetail, now: number): HTMLElement[] {
  const description = view.description
    ? element('p', 'jp-himalia-feature-description', view.description)
    : element('p', 'jp-himalia-note', 'No description.');
  const tags = element('div', 'jp-himalia-feature-tags');
  tags.setAttribute('aria-label', 'Tags');
  for (const [key, value] of Object.entries(view.tags)) {
    const tag = element('span', 'jp-himalia-badge jp-himalia-feature-tag', `${key}: ${value}`);
    tag.dataset.tag = key;
    tags.appendChild(tag);
  }
  tags.hidden = tags.childElementCount === 0;

  const source = view.source;
  const mapping = Object.entries(source.field_mapping)
    .map(([column, feature]) => `${column} → ${feature}`)
    .join(', ');
  const definition = element('div', 'jp-himalia-feature-definition');
  definition.append(
    field('Owner', view.owner),
    field('Entities', view.entities.join(', ') || '—'),
    field('Join keys', view.join_keys.map(k => `${k.name} (${k.dtype})`).join(', ') || '—', true),
    field('Source', source.path, true),
    field(
      'Event time',
      source.timestamp_field +
        (source.created_timestamp_column
          ? `, ties broken by ${source.created_timestamp_column}`
          : ''),
      true
    ),
    ...(mapping ? [field('Renamed', mapping, true)] : []),
    field('TTL', formatTTL(view.ttl_seconds)),
    field(
      'Data',
      view.rows === null
        ? 'not read yet'
        : `${plural(view.rows, 'row')}, ${plural(view.entity_count ?? 0, 'entity', 'entities')}`
    ),
    field(
      'Definition',
      [
        view.versions.length ? `version ${view.versions.length}` : '',
        `hash ${view.hash}`,
        view.updated_at ? `updated ${formatWhen(view.updated_at)}` : ''
      ]
        .filter(Boolean)
        .join(', ')
    )
  );

  const freshness = element(
    'p',
    'jp-himalia-feature-freshness',
    freshnessOf(view, now).join(' · ')
  );
  freshness.title = freshnessTitle(view);

  return [
    description,
    tags,
    definition,
    subheading('Freshness'),
    freshness,
    subheading('Statistics'),
    ...renderStatistics(view),
    subheading('Materializations'),
    renderMaterializations(view.materializations)
  ];
}

/**
 * The statistics table (one row per feature) and a histogram of each number.
 */
function renderStatistics(view: IFeatureViewDetail): HTMLElement[] {
  const computed = element(
    'p',
    'jp-himalia-note',
    view.statistics_at
      ? `Read from the source ${formatWhen(view.statistics_at)}, when it was last applied or ` +
          'materialized.'
      : 'Not read yet: they come with the next apply or materialization.'
  );
  const table = element('table', 'jp-himalia-deployment-totals jp-himalia-feature-stats');
  const head = table.createTHead().insertRow();
  for (const title of ['Feature', 'Count', 'Nulls', 'Distinct', 'Mean', 'Std', 'Min', 'Max']) {
    head.appendChild(element('th', '', title));
  }
  const body = table.createTBody();
  const figures: HTMLElement[] = [];
  for (const feature of view.features) {
    const stats: Partial<IFeatureStatistics> = view.statistics[feature.name] ?? {};
    const row = body.insertRow();
    row.dataset.feature = feature.name;
    const name = row.insertCell();
    name.textContent = feature.name;
    name.title = [feature.dtype, feature.description].filter(Boolean).join(': ');
    for (const value of [stats.count, stats.nulls, stats.distinct]) {
      row.insertCell().textContent = value === undefined ? '—' : String(value);
    }
    for (const value of [stats.mean, stats.std, stats.min, stats.max]) {
      row.insertCell().textContent =
        value === undefined || value === null ? '—' : formatValue(value);
    }
    const histogram = stats.histogram;
    if (histogram && histogram.counts.length > 0) {
      const figure = element('figure', 'jp-himalia-feature-histogram');
      figure.dataset.feature = feature.name;
      figure.append(
        element('figcaption', '', feature.name),
        histogramPlot(histogram.edges, histogram.counts, { label: feature.name })
      );
      figures.push(figure);
    }
  }
  const scroller = element('div', 'jp-himalia-feature-stats-scroll');
  scroller.appendChild(table);
  return [computed, scroller, ...figures];
}

/**
 * The view's loads into the online store, newest first.
 */
function renderMaterializations(materializations: IMaterialization[]): HTMLElement {
  if (materializations.length === 0) {
    return element('p', 'jp-himalia-note', 'Never loaded into the online store.');
  }
  const list = element('ul', 'jp-himalia-materialization-list');
  list.setAttribute('aria-label', 'Materializations');
  for (const m of materializations) {
    const item = element('li', 'jp-himalia-materialization');
    item.dataset.id = String(m.id);
    item.dataset.state = m.state;
    const top = element('div', 'jp-himalia-materialization-top');
    top.append(
      element('span', `jp-himalia-badge jp-himalia-run-${m.state}`, m.state),
      element('span', 'jp-himalia-materialization-rows', plural(m.rows, 'row'))
    );
    const span = element(
      'div',
      'jp-himalia-materialization-span',
      `events ${m.start ? formatWhen(m.start) : '…'} → ${m.end ? formatWhen(m.end) : '…'}`
    );
    const by = element(
      'div',
      'jp-himalia-materialization-by',
      [
        `by ${m.owner}`,
        m.started_at ? formatWhen(m.started_at) : '',
        m.job_run_id ? `job run ${m.job_run_id}` : ''
      ]
        .filter(Boolean)
        .join(', ')
    );
    item.append(top, span, by);
    if (m.message) {
      item.appendChild(
        element(
          'div',
          `jp-himalia-materialization-message${m.state === 'failed' ? ' jp-himalia-error' : ''}`,
          m.message
        )
      );
    }
    list.appendChild(item);
  }
  return list;
}

/**
 * How fresh a view is, in short phrases: `latest event 3 days ago`, `online through …`, and
 * whether its last load failed.
 */
export function freshnessOf(view: IFeatureView, now = Date.now()): string[] {
  const { latest_event, materialized_through, last_materialization } = view.freshness;
  const parts = [
    latest_event ? `latest event ${formatAgo(latest_event, now)}` : 'no events read yet'
  ];
  if (!view.online) {
    parts.push('offline only');
  } else if (materialized_through) {
    parts.push(`online through ${formatWhen(materialized_through)}`);
  } else {
    parts.push('not online yet');
  }
  if (last_materialization?.state === 'failed') {
    parts.push('last load failed');
  } else if (last_materialization?.state === 'running') {
    parts.push('loading now');
  }
  return parts;
}

function freshnessTitle(view: IFeatureView): string {
  const { latest_event, materialized_through } = view.freshness;
  return [
    latest_event ? `Newest event time in the source: ${latest_event}` : '',
    materialized_through ? `Online values loaded for events up to ${materialized_through}` : ''
  ]
    .filter(Boolean)
    .join('\n');
}

/**
 * How long ago (or how far ahead) a time is, as the browser's language says it: `3 days ago`.
 */
export function formatAgo(iso: string, now = Date.now()): string {
  const seconds = (Date.parse(iso) - now) / 1000;
  // Up to each limit, in that unit: "45 days ago" reads better than "1 month ago".
  const scales: [number, Intl.RelativeTimeFormatUnit, number][] = [
    [3600, 'minute', 60],
    [86400, 'hour', 3600],
    [60 * 86400, 'day', 86400],
    [730 * 86400, 'month', 30 * 86400],
    [Infinity, 'year', 365 * 86400]
  ];
  if (Math.abs(seconds) < 60) {
    return 'just now';
  }
  const [, unit, size] = scales.find(([limit]) => Math.abs(seconds) < limit)!;
  const format = new Intl.RelativeTimeFormat(undefined, { numeric: 'always' });
  return format.format(Math.round(seconds / size), unit);
}

/**
 * A time-to-live as people say it: `20 days`, `12 hours`; 0 is no limit.
 */
export function formatTTL(seconds: number): string {
  if (!seconds) {
    return 'none: values never expire';
  }
  for (const [unit, size] of [
    ['day', 86400],
    ['hour', 3600],
    ['minute', 60]
  ] as [string, number][]) {
    if (seconds % size === 0) {
      return plural(seconds / size, unit);
    }
  }
  return plural(seconds, 'second');
}

function plural(count: number, one: string, many = `${one}s`): string {
  return `${count.toLocaleString()} ${count === 1 ? one : many}`;
}

function field(label: string, value: string, code = false): HTMLElement {
  const row = element('div', 'jp-himalia-field');
  row.append(
    element('span', 'jp-himalia-label', label),
    element(code ? 'code' : 'span', 'jp-himalia-feature-value', value)
  );
  return row;
}

function subheading(text: string): HTMLElement {
  return element('h4', 'jp-himalia-deployment-subheading', text);
}
