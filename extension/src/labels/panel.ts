import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { LabIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { actionButton, element, panelHeader, reconcile } from '../dom';
import { IWhoAmI } from '../handler';
import { formatWhen } from '../jobs/panel';
import {
  IAgreement,
  IConflict,
  ILabelSet,
  ILabelSnapshot,
  Label,
  LabelsClient
} from './client';

/**
 * A tag on a string: things labeled.
 */
const LABELS_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <path class="jp-icon3" fill="#616161" d="M3 3h9l9 9-9 9-9-9V3zm2 2v6.2l7 7 6.2-6.2-7-7H5zm3 1.5a1.5 1.5 0 1 1 0 3 1.5 1.5 0 0 1 0-3z"/>
</svg>`;

/**
 * The Labels panel's sidebar icon.
 */
export const labelsIcon = new LabIcon({
  name: 'himalia:labels',
  svgstr: LABELS_SVG
});

/**
 * How often the panel asks for the sets' progress again while it is shown, in ms.
 */
export const POLL_INTERVAL = 10000;

/**
 * Options of the Labels panel.
 */
export interface ILabelsPanelOptions {
  /** The REST client the panel reads label sets through. */
  client: LabelsClient;
  /** Who the user is on the platform: the owner of a set (or an administrator) manages it. */
  whoami: () => Promise<IWhoAmI>;
}

/**
 * What the panel keeps of one label set's row in the list.
 */
interface ISetRow {
  node: HTMLLIElement;
  name: HTMLButtonElement;
  owner: HTMLElement;
  bar: HTMLProgressElement;
  done: HTMLElement;
  summary: HTMLElement;
}

/**
 * Sidebar panel: the user's label sets and those shared with them, each with its progress.
 * The one selected shows its classes and instructions and labels per annotator, and opens the
 * labeling page; to its owner it also shows how much the annotators agree (kappa overall and
 * per class, the confusion of their labels), the items they disagree on to adjudicate, and its
 * snapshots, and takes one. The progress is asked again every few seconds while shown.
 */
export class LabelsPanel extends Widget {
  constructor(options: ILabelsPanelOptions) {
    super();
    this._client = options.client;
    this._whoami = options.whoami;
    this.id = 'himalia-labels';
    this.addClass('jp-himalia-labels');
    this.title.icon = labelsIcon;
    this.title.caption = 'Labels';

    const { header } = panelHeader('Labels', () => void this.refresh());
    this._state = element('div', 'jp-himalia-state');
    this._state.setAttribute('role', 'status');
    this._list = element('ul', 'jp-himalia-deployment-list jp-himalia-labels-list');
    this._list.setAttribute('aria-label', 'Label sets');
    this._detail = element('section', 'jp-himalia-labels-detail');
    this.node.append(header, this._state, this._list, this._detail);
    this.node.dataset.polling = 'false';
  }

  /**
   * Ask for the label sets again, and for the selected one's agreement and conflicts;
   * failures, a refusal of the platform included, are shown in the panel.
   */
  async refresh(): Promise<void> {
    if (await this._loadSets()) {
      await this._view?.load();
    }
  }

  /**
   * Reload, then show a label set (by id) in detail.
   */
  async reveal(id: number): Promise<void> {
    if (await this._loadSets()) {
      if (this._view?.id !== id) {
        this._select(id);
      }
      await this._view?.load();
    }
    this._rows.get(id)?.node.scrollIntoView({ block: 'nearest' });
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

  /**
   * Reload the sets (and the caller's identity until it is known); false when that failed
   * or a newer request overtook this one.
   */
  private async _loadSets(): Promise<boolean> {
    const request = ++this._requests;
    this._stopPolling();
    if (this._rows.size === 0) {
      this._showState('Loading…', false);
    }
    try {
      const [sets] = await Promise.all([
        this._client.labelSets(),
        this._me ? null : this._learnWhoIAm()
      ]);
      if (request !== this._requests || this.isDisposed) {
        return false;
      }
      this._showSets(sets);
      return true;
    } catch (error) {
      if (request === this._requests && !this.isDisposed) {
        this._showState((error as Error).message, true);
      }
      return false;
    } finally {
      if (request === this._requests) {
        this._pollSoon();
      }
    }
  }

  private async _learnWhoIAm(): Promise<void> {
    try {
      this._me = await this._whoami();
    } catch {
      // Without it, nothing is offered to adjudicate; the platform would refuse it anyway.
      this._me = null;
    }
  }

  private _showState(text: string, isError: boolean): void {
    this._state.textContent = text;
    this._state.classList.toggle('jp-himalia-error', isError);
    this._state.hidden = text === '';
  }

  private _showSets(sets: ILabelSet[]): void {
    this._sets = sets;
    reconcile(this._list, sets, this._rows, {
      key: set => set.id,
      make: set => this._makeRow(set),
      update: (row, set) => updateRow(row, set, this._me)
    });
    const selected = sets.find(set => set.id === this._view?.id);
    if (this._view && selected) {
      this._view.show(selected, this._canManage(selected));
    } else if (this._view) {
      this._select(null);
    }
    this._markSelected();
    this._showState(
      sets.length === 0
        ? 'No label sets yet. Make one in a notebook: %label NAME --classes a,b,c, or ' +
            'himalia.sdk.labels.create(name, classes).'
        : '',
      false
    );
  }

  private _makeRow(set: ILabelSet): ISetRow {
    const node = element('li', 'jp-himalia-deployment jp-himalia-labels-set');
    node.dataset.id = String(set.id);
    node.dataset.name = set.name;
    const name = element(
      'button',
      'jp-himalia-deployment-name jp-himalia-labels-name',
      set.name
    );
    name.type = 'button';
    name.title = `Show ${set.name}: annotators, agreement, conflicts`;
    name.addEventListener('click', () => {
      if (this._view?.id !== set.id) {
        this._select(set.id);
        void this._view?.load();
      }
    });
    const owner = element('span', 'jp-himalia-labels-owner');
    const top = element('div', 'jp-himalia-deployment-top');
    top.append(name, owner);
    const bar = element('progress');
    bar.setAttribute('aria-label', `Progress of ${set.name}`);
    const done = element('span', 'jp-himalia-labels-done');
    const progress = element('div', 'jp-himalia-run-progress');
    progress.append(bar, done);
    const summary = element('div', 'jp-himalia-labels-summary');
    node.append(top, progress, summary);
    return { node, name, owner, bar, done, summary };
  }

  private _select(id: number | null): void {
    this._view?.dispose();
    const set = this._sets.find(s => s.id === id);
    this._view = set ? new LabelSetView(set, this._client) : null;
    if (this._view && set) {
      this._view.show(set, this._canManage(set));
    }
    this._detail.replaceChildren(...(this._view ? [this._view.node] : []));
    this._markSelected();
  }

  private _canManage(set: ILabelSet): boolean {
    return this._me !== null && (set.owner === this._me.name || this._me.roles.includes('admin'));
  }

  private _markSelected(): void {
    for (const [id, row] of this._rows) {
      const on = id === this._view?.id;
      row.node.classList.toggle('jp-mod-selected', on);
      row.name.setAttribute('aria-pressed', String(on));
    }
  }

  /**
   * Ask for the progress again in a while, while the panel is shown.
   */
  private _pollSoon(): void {
    this._stopPolling();
    if (this.isDisposed || !this.isVisible) {
      return;
    }
    this.node.dataset.polling = 'true';
    this._pollTimer = window.setTimeout(() => {
      this._pollTimer = 0;
      void this._loadSets();
    }, POLL_INTERVAL);
  }

  private _stopPolling(): void {
    window.clearTimeout(this._pollTimer);
    this._pollTimer = 0;
    this.node.dataset.polling = 'false';
  }

  private _client: LabelsClient;
  private _whoami: () => Promise<IWhoAmI>;
  private _me: IWhoAmI | null = null;
  private _state: HTMLDivElement;
  private _list: HTMLUListElement;
  private _detail: HTMLElement;
  private _rows = new Map<number, ISetRow>();
  private _sets: ILabelSet[] = [];
  private _view: LabelSetView | null = null;
  private _pollTimer = 0;
  private _requests = 0;
}

function updateRow(row: ISetRow, set: ILabelSet, me: IWhoAmI | null): void {
  const { items, done, labels, remaining_for_me } = set.progress;
  row.owner.textContent = set.owner === me?.name ? 'yours' : `shared by ${set.owner}`;
  row.bar.max = Math.max(items, 1);
  row.bar.value = done;
  row.done.textContent = `${done.toLocaleString()} / ${items.toLocaleString()} done`;
  row.done.title = `Items with their ${plural(set.k, 'label')}`;
  row.summary.textContent = [
    plural(labels, 'label'),
    `${set.k} per item`,
    remaining_for_me > 0 ? `${remaining_for_me.toLocaleString()} for you` : 'none left for you'
  ].join(' · ');
}

/**
 * One label set in detail. Its nodes live as long as it is selected; the progress is updated
 * from the list. For the set's owner (or an administrator) the agreement, conflicts and
 * snapshots are asked for on selection and refresh, and Snapshot and adjudication are offered.
 */
class LabelSetView {
  constructor(
    set: ILabelSet,
    private _client: LabelsClient
  ) {
    this.id = set.id;
    this._set = set;
    this.node = element('div', 'jp-himalia-deployment-view jp-himalia-labels-view');
    this.node.dataset.id = String(set.id);
    this.node.dataset.name = set.name;

    const label = actionButton('Label…', 'jp-himalia-labels-open');
    const url = labelingPageUrl(set.id);
    label.hidden = url === null;
    label.title = `Label the items of ${set.name} on the labeling page, in a new tab`;
    label.addEventListener('click', () => window.open(url!, '_blank', 'noopener'));
    this._snapshot = actionButton('Snapshot', 'jp-himalia-labels-take-snapshot');
    this._snapshot.title = 'Freeze the labels as the next numbered snapshot, for training';
    this._snapshot.addEventListener('click', () => void this._takeSnapshot());
    const actions = element('div', 'jp-himalia-deployment-actions');
    actions.append(label, this._snapshot);

    this._error = element('div', 'jp-himalia-state jp-himalia-error');
    this._error.setAttribute('role', 'alert');
    this._error.hidden = true;
    this._done = element('p', 'jp-himalia-note jp-himalia-labels-taken');
    this._done.setAttribute('role', 'status');
    this._done.hidden = true;

    this._about = element('div', 'jp-himalia-labels-about');
    this._annotators = element(
      'table',
      'jp-himalia-deployment-totals jp-himalia-labels-annotators'
    );
    this._annotators.setAttribute('aria-label', 'Labels per annotator');
    this._ownerOnly = element('p', 'jp-himalia-note');
    this._agreement = element('div', 'jp-himalia-labels-agreement');
    this._conflicts = element('div', 'jp-himalia-labels-conflicts');
    this._snapshots = element('div', 'jp-himalia-labels-snapshots');
    this._managed = element('div', 'jp-himalia-labels-managed');
    this._managed.append(
      subheading('Agreement'),
      this._agreement,
      subheading('Conflicts'),
      this._conflicts,
      subheading('Snapshots'),
      this._snapshots
    );
    for (const section of [this._agreement, this._conflicts, this._snapshots]) {
      section.appendChild(element('p', 'jp-himalia-note', 'Loading…'));
    }

    this.node.append(
      element('h3', 'jp-himalia-detail-heading', set.name),
      actions,
      this._error,
      this._done,
      this._about,
      subheading('Annotators'),
      this._annotators,
      this._ownerOnly,
      this._managed
    );
  }

  readonly id: number;
  readonly node: HTMLDivElement;

  /**
   * Show the set as the platform last described it; `canManage`: the caller owns it or is an
   * administrator, and sees its agreement, conflicts and snapshots.
   */
  show(set: ILabelSet, canManage: boolean): void {
    this._set = set;
    this._canManage = canManage;
    this._about.replaceChildren(...renderAbout(set));
    renderAnnotators(this._annotators, set);
    this._snapshot.hidden = this._managed.hidden = !canManage;
    this._ownerOnly.textContent = canManage
      ? ''
      : `Agreement, conflicts and snapshots are for the set's owner, ${set.owner}.`;
    this._ownerOnly.hidden = canManage;
  }

  /**
   * Ask for the agreement, the conflicts and the snapshots again; each shows its own failure.
   */
  async load(): Promise<void> {
    if (!this._canManage) {
      return;
    }
    const [agreement, conflicts, snapshots] = await Promise.allSettled([
      this._client.agreement(this.id),
      this._client.conflicts(this.id),
      this._client.snapshots(this.id)
    ]);
    if (this._disposed) {
      return;
    }
    this._agreement.replaceChildren(
      ...(agreement.status === 'fulfilled'
        ? renderAgreement(agreement.value)
        : [failure(agreement.reason)])
    );
    this._conflicts.replaceChildren(
      conflicts.status === 'fulfilled'
        ? this._renderConflicts(conflicts.value)
        : failure(conflicts.reason)
    );
    if (snapshots.status === 'fulfilled') {
      this._versions = new Set(snapshots.value.map(s => s.version));
      this._snapshots.replaceChildren(renderSnapshots(snapshots.value));
    } else {
      this._snapshots.replaceChildren(failure(snapshots.reason));
    }
  }

  dispose(): void {
    this._disposed = true;
  }

  private _renderConflicts(conflicts: IConflict[]): HTMLElement {
    if (conflicts.length === 0) {
      return element('p', 'jp-himalia-note', "No conflicts: every item's labels agree.");
    }
    const list = element('ul', 'jp-himalia-deployment-list');
    list.setAttribute('aria-label', 'Conflicts');
    for (const conflict of conflicts) {
      const item = element('li', 'jp-himalia-labels-conflict');
      item.dataset.item = conflict.item_id;
      const top = element('div', 'jp-himalia-deployment-top');
      top.appendChild(element('code', 'jp-himalia-labels-item', conflict.item_id));
      if (conflict.adjudicated !== null) {
        const decided = element(
          'span',
          'jp-himalia-badge jp-himalia-labels-decided',
          `decided: ${formatLabel(conflict.adjudicated)}`
        );
        decided.title = conflict.adjudicated_by ? `Decided by ${conflict.adjudicated_by}` : '';
        top.appendChild(decided);
      }
      const votes = element('div', 'jp-himalia-labels-votes');
      for (const [user, label] of Object.entries(conflict.votes)) {
        const vote = element('span', 'jp-himalia-labels-vote', `${user}: ${formatLabel(label)}`);
        vote.dataset.user = user;
        votes.appendChild(vote);
      }
      item.append(top, votes, this._adjudicator(conflict));
      list.appendChild(item);
    }
    return list;
  }

  /**
   * The owner's choice of an item's label: a class of a single-label set, one of the labels
   * given for a multi-label one.
   */
  private _adjudicator(conflict: IConflict): HTMLSelectElement {
    const select = element('select', 'jp-mod-styled jp-himalia-labels-adjudicate');
    select.setAttribute('aria-label', `Adjudicate ${conflict.item_id}`);
    const choices: Label[] =
      this._set.task === 'multi'
        ? uniqueLabels(Object.values(conflict.votes))
        : this._set.classes;
    const prompt = element('option', '', 'Adjudicate…');
    prompt.value = '';
    prompt.disabled = true;
    select.appendChild(prompt);
    for (const choice of choices) {
      const option = element('option', '', formatLabel(choice));
      option.value = JSON.stringify(choice);
      select.appendChild(option);
    }
    select.value = conflict.adjudicated === null ? '' : JSON.stringify(conflict.adjudicated);
    select.addEventListener('change', () => {
      const label = JSON.parse(select.value) as Label;
      void this._act(select, () => this._client.adjudicate(this.id, conflict.item_id, label));
    });
    return select;
  }

  private async _takeSnapshot(): Promise<void> {
    await this._act(this._snapshot, async () => {
      const snapshot = await this._client.snapshot(this.id);
      this._done.textContent = this._versions.has(snapshot.version)
        ? `The labels have not changed since snapshot v${snapshot.version}.`
        : `Snapshot v${snapshot.version} taken: ${plural(snapshot.items, 'item')}, ` +
          `${plural(snapshot.annotations, 'label')}.`;
      this._done.hidden = false;
    });
  }

  /**
   * Run an action with its control disabled, then reload; its failure is shown above.
   */
  private async _act(
    control: HTMLButtonElement | HTMLSelectElement,
    action: () => Promise<void>
  ): Promise<void> {
    control.disabled = true;
    this.node.classList.add('jp-mod-busy');
    try {
      await action();
      this._error.hidden = true;
    } catch (error) {
      this._error.textContent = (error as Error).message;
      this._error.hidden = false;
    } finally {
      control.disabled = false;
      this.node.classList.remove('jp-mod-busy');
    }
    if (!this._disposed) {
      await this.load();
    }
  }

  private _set: ILabelSet;
  private _canManage = false;
  private _versions = new Set<number>();
  private _snapshot: HTMLButtonElement;
  private _done: HTMLParagraphElement;
  private _error: HTMLDivElement;
  private _about: HTMLDivElement;
  private _annotators: HTMLTableElement;
  private _ownerOnly: HTMLParagraphElement;
  private _managed: HTMLDivElement;
  private _agreement: HTMLDivElement;
  private _conflicts: HTMLDivElement;
  private _snapshots: HTMLDivElement;
  private _disposed = false;
}

/**
 * Where a label set is labeled: the platform's labeling page, beside the hub (its prefix
 * without `hub/`, on the hub's host); null when JupyterLab does not run under a hub.
 */
export function labelingPageUrl(
  id: number,
  hubPrefix = PageConfig.getOption('hubPrefix'),
  hubHost = PageConfig.getOption('hubHost'),
  origin = window.location.origin
): string | null {
  if (!hubPrefix) {
    return null;
  }
  const base = hubPrefix.replace(/hub\/?$/, '');
  return URLExt.join(hubHost || origin, base, 'services/himalia/label', String(id));
}

/**
 * A label as people read it: a class, or the classes given, joined.
 */
export function formatLabel(label: Label): string {
  return Array.isArray(label) ? label.join(' + ') || '(none)' : label;
}

/**
 * A kappa with two decimals; a dash where there is none.
 */
export function formatKappa(kappa: number | null | undefined): string {
  return kappa === null || kappa === undefined ? '—' : kappa.toFixed(2);
}

function uniqueLabels(labels: Label[]): Label[] {
  const seen = new Map<string, Label>();
  for (const label of labels) {
    seen.set(JSON.stringify(label), label);
  }
  return [...seen.values()];
}

function renderAbout(set: ILabelSet): HTMLElement[] {
  const shared = [...set.shared_users, ...set.shared_groups.map(g => `group ${g}`)];
  const nodes: HTMLElement[] = [
    field('Owner', set.owner),
    field('Classes', set.classes.join(', ')),
    field(
      'Task',
      `${set.task === 'multi' ? 'multi-label: any classes' : 'single label: one class'}, ` +
        `${plural(set.k, 'person', 'people')} per item`
    ),
    field('Shared', shared.join(', ') || 'with nobody')
  ];
  if (set.strategy) {
    nodes.push(
      field('Queue', set.model ? `${set.strategy}, scores of ${set.model}` : set.strategy)
    );
  }
  if (set.instructions) {
    nodes.push(element('p', 'jp-himalia-labels-instructions', set.instructions));
  }
  return nodes;
}

/**
 * Labels per annotator, most first, each with a bar out of the set's items.
 */
function renderAnnotators(table: HTMLTableElement, set: ILabelSet): void {
  const annotators = Object.entries(set.progress.annotators).sort(
    ([a, x], [b, y]) => y - x || a.localeCompare(b)
  );
  table.replaceChildren();
  const head = table.createTHead().insertRow();
  for (const title of ['Annotator', 'Labels', '']) {
    head.appendChild(element('th', '', title));
  }
  const body = table.createTBody();
  for (const [user, count] of annotators) {
    const row = body.insertRow();
    row.dataset.user = user;
    row.insertCell().textContent = user;
    row.insertCell().textContent = count.toLocaleString();
    const bar = element('progress', 'jp-himalia-labels-bar');
    bar.max = Math.max(set.progress.items, 1);
    bar.value = count;
    bar.setAttribute('aria-label', `Labels of ${user}`);
    row.insertCell().appendChild(bar);
  }
  if (annotators.length === 0) {
    const cell = body.insertRow().insertCell();
    cell.colSpan = 3;
    cell.className = 'jp-himalia-note';
    cell.textContent = 'Nobody has labeled yet.';
  }
}

/**
 * Kappa overall and per class, and the confusion of the annotators' labels.
 */
function renderAgreement(agreement: IAgreement): HTMLElement[] {
  if (agreement.method === null || agreement.items === 0) {
    return [
      element(
        'p',
        'jp-himalia-note',
        'Not measured yet: it needs items labeled by two people or more.'
      )
    ];
  }
  const method =
    (agreement.task === 'multi' ? 'mean per-class ' : '') +
    (agreement.method === 'cohen' ? "Cohen's κ" : "Fleiss' κ");
  const kappa = element('p', 'jp-himalia-labels-kappa');
  kappa.dataset.method = agreement.method;
  kappa.append(
    `${method} `,
    element('strong', 'jp-himalia-labels-kappa-value', formatKappa(agreement.kappa)),
    ` over ${plural(agreement.items, 'item')}, ${plural(agreement.annotators.length, 'annotator')}`
  );
  kappa.title = `Annotators: ${agreement.annotators.join(', ')}`;

  const perClass = element('table', 'jp-himalia-deployment-totals jp-himalia-labels-per-class');
  perClass.setAttribute('aria-label', 'Kappa per class');
  const head = perClass.createTHead().insertRow();
  head.append(element('th', '', 'Class'), element('th', '', 'κ'));
  const body = perClass.createTBody();
  for (const [cls, value] of Object.entries(agreement.per_class)) {
    const row = body.insertRow();
    row.dataset.class = cls;
    row.insertCell().textContent = cls;
    row.insertCell().textContent = formatKappa(value);
  }
  return [kappa, perClass, renderConfusion(agreement)];
}

/**
 * The confusion matrix: how often one class met another on the same item; agreement on the
 * diagonal.
 */
function renderConfusion(agreement: IAgreement): HTMLElement {
  const { classes, matrix } = agreement.confusion;
  const table = element('table', 'jp-himalia-deployment-totals jp-himalia-labels-confusion');
  table.setAttribute('aria-label', 'Confusion matrix');
  const [first, second] = agreement.annotators;
  table.createCaption().textContent =
    agreement.method === 'cohen' && second
      ? `Rows: ${first}'s labels; columns: ${second}'s`
      : 'Pairs of labels given to the same item';
  const head = table.createTHead().insertRow();
  head.appendChild(element('th', ''));
  for (const cls of classes) {
    head.appendChild(element('th', '', cls));
  }
  const body = table.createTBody();
  classes.forEach((cls, i) => {
    const row = body.insertRow();
    row.dataset.class = cls;
    row.appendChild(element('th', '', cls));
    classes.forEach((_, j) => {
      const cell = row.insertCell();
      cell.textContent = String(matrix[i]?.[j] ?? 0);
      cell.classList.toggle('jp-himalia-labels-agree', i === j);
    });
  });
  const scroller = element('div', 'jp-himalia-labels-scroll');
  scroller.appendChild(table);
  return scroller;
}

/**
 * The set's snapshots, newest first.
 */
function renderSnapshots(snapshots: ILabelSnapshot[]): HTMLElement {
  if (snapshots.length === 0) {
    return element('p', 'jp-himalia-note', 'None yet: Snapshot freezes the labels for training.');
  }
  const list = element('ul', 'jp-himalia-deployment-list');
  list.setAttribute('aria-label', 'Snapshots');
  for (const snapshot of [...snapshots].reverse()) {
    const item = element('li', 'jp-himalia-labels-snapshot');
    item.dataset.version = String(snapshot.version);
    const sha = element('code', 'jp-himalia-labels-sha', snapshot.sha256.slice(0, 12));
    sha.title = `sha256 ${snapshot.sha256}`;
    item.append(
      element('strong', '', `v${snapshot.version}`),
      ` ${plural(snapshot.items, 'item')}, ${plural(snapshot.annotations, 'label')} · `,
      sha,
      ` · ${snapshot.created_by}, ${formatWhen(snapshot.created_at)}`
    );
    list.appendChild(item);
  }
  return list;
}

function failure(error: unknown): HTMLElement {
  return element('p', 'jp-himalia-state jp-himalia-error', (error as Error).message);
}

function plural(count: number, one: string, many = `${one}s`): string {
  return `${count.toLocaleString()} ${count === 1 ? one : many}`;
}

function field(label: string, value: string): HTMLElement {
  const row = element('div', 'jp-himalia-field');
  row.append(element('span', 'jp-himalia-label', label), element('span', '', value));
  return row;
}

function subheading(text: string): HTMLElement {
  return element('h4', 'jp-himalia-deployment-subheading', text);
}
