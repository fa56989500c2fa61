import { Widget } from '@lumino/widgets';

import { element } from '../dom';
import { HimaliaClient } from '../handler';
import { DASHBOARD_NAME, DashboardsClient, IDashboard, INewDashboard } from './client';
import { words } from './panel';

/**
 * Options of the "Publish as dashboard" dialog.
 */
export interface IPublishDialogOptions {
  client: DashboardsClient;
  /** Lists the user's jobs, one of which the dashboard may show the outputs of. */
  jobs: HimaliaClient;
  /** The notebook's path from the server's root, saved. */
  path: string;
}

/**
 * Open the "Publish as dashboard" dialog for a notebook; resolves with the dashboard
 * published, or null when closed.
 */
export function publishNotebook(options: IPublishDialogOptions): Promise<IDashboard | null> {
  const dialog = new PublishDialog(options);
  Widget.attach(dialog, document.body);
  return dialog.result;
}

/**
 * A dashboard name for a notebook: its file name, lowercase, other characters as `-`.
 */
export function dashboardNameFor(path: string): string {
  const stem = (path.split('/').pop() ?? '').replace(/\.ipynb$/, '');
  const name = stem
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return name || 'dashboard';
}

/**
 * A title for a notebook: its file name without `.ipynb`, `_` and `-` as spaces.
 */
export function titleFor(path: string): string {
  const stem = (path.split('/').pop() ?? '').replace(/\.ipynb$/, '');
  return stem.replace(/[_-]+/g, ' ').trim();
}

/**
 * The "Publish as dashboard" dialog: the dashboard's name and title, a line about it, the job
 * whose outputs it shows, and who may open it. Publishing a name of one's own again makes its
 * next version.
 */
export class PublishDialog extends Widget {
  constructor(options: IPublishDialogOptions) {
    super();
    this._client = options.client;
    this._path = options.path;
    this.addClass('jp-Dialog');
    this.addClass('jp-himalia-schedule-dialog');
    this.result = new Promise(resolve => (this._resolve = resolve));

    const form = element('form', 'jp-Dialog-content jp-himalia-schedule jp-himalia-publish');
    form.noValidate = true;
    form.setAttribute('role', 'dialog');
    form.setAttribute('aria-modal', 'true');
    form.setAttribute('aria-labelledby', 'jp-himalia-publish-heading');
    form.addEventListener('submit', event => {
      event.preventDefault();
      void this._submit();
    });

    const header = element('div', 'jp-Dialog-header jp-himalia-schedule-header');
    const title = element('h2', 'jp-himalia-schedule-title', 'Publish as dashboard');
    title.id = 'jp-himalia-publish-heading';
    header.append(title, element('div', 'jp-himalia-schedule-path', this._path));

    this._name = this._input('name', dashboardNameFor(this._path));
    this._name.addEventListener('input', () => (this._nameError.textContent = ''));
    this._nameError = element('div', 'jp-himalia-field-error');
    this._title = this._input('title', titleFor(this._path));
    this._description = this._input('description', '');
    this._job = element('select', 'jp-mod-styled');
    this._job.name = 'job';
    this._job.id = 'jp-himalia-publish-job';
    this._job.appendChild(new Option('None: it shows what the notebook computes', ''));
    this._users = this._input('users', '');
    this._users.placeholder = 'comma-separated';
    this._groups = this._input('groups', '');
    this._groups.placeholder = 'comma-separated';
    this._viewers = element('input');
    this._viewers.type = 'checkbox';
    this._viewers.name = 'viewers';
    this._viewers.id = 'jp-himalia-publish-viewers';
    this._error = element('div', 'jp-himalia-state jp-himalia-error jp-himalia-schedule-error');
    this._error.setAttribute('role', 'alert');

    const viewers = element('div', 'jp-himalia-schedule-field jp-himalia-publish-viewers');
    const viewersLabel = element('label', '', ' Everyone with the viewer role');
    viewersLabel.htmlFor = this._viewers.id;
    viewers.append(this._viewers, viewersLabel);

    const body = element('div', 'jp-Dialog-body jp-himalia-schedule-body');
    body.append(
      field('Dashboard name', this._name, this._nameError),
      field('Title', this._title),
      field('Description', this._description),
      field(
        'Job',
        this._job,
        element(
          'div',
          'jp-himalia-note',
          'Its latest successful run feeds the dashboard: read its values with ' +
            'himalia.sdk.latest(job, name).'
        )
      ),
      field('Share with users', this._users),
      field('Share with groups', this._groups),
      viewers,
      element(
        'p',
        'jp-himalia-note',
        'Viewers see the outputs and widgets, never the code. The notebook is published as saved.'
      ),
      this._error
    );

    const footer = element('div', 'jp-Dialog-footer');
    const cancel = element('button', 'jp-Dialog-button jp-mod-reject jp-mod-styled', 'Cancel');
    cancel.type = 'button';
    cancel.addEventListener('click', () => this.close());
    this._submitButton = element(
      'button',
      'jp-Dialog-button jp-mod-accept jp-mod-styled',
      'Publish'
    );
    this._submitButton.type = 'submit';
    const buttons = element('div', 'jp-Dialog-footerButtons');
    buttons.append(cancel, this._submitButton);
    footer.appendChild(buttons);

    form.append(header, body, footer);
    this.node.appendChild(form);
    this.node.addEventListener('keydown', event => {
      if (event.key === 'Escape') {
        event.stopPropagation();
        this.close();
      }
    });
    void this._loadJobs(options.jobs);
  }

  /**
   * Resolves with the dashboard when published; null when the dialog was closed.
   */
  readonly result: Promise<IDashboard | null>;

  close(): void {
    this._finish(null);
  }

  dispose(): void {
    this._finish(null);
    super.dispose();
  }

  protected onAfterAttach(): void {
    this._name.focus();
    this._name.select();
  }

  private _input(name: string, value: string): HTMLInputElement {
    const input = element('input', 'jp-mod-styled');
    input.type = 'text';
    input.name = name;
    input.id = `jp-himalia-publish-${name}`;
    input.value = value;
    input.spellcheck = false;
    return input;
  }

  private async _loadJobs(client: HimaliaClient): Promise<void> {
    try {
      for (const job of await client.jobs()) {
        this._job.appendChild(new Option(`${job.name} (${job.owner})`, String(job.id)));
      }
    } catch {
      // Without the list a dashboard is published unlinked; a job can be linked later.
      this._job.disabled = this._job.options.length <= 1;
    }
  }

  private _finish(result: IDashboard | null): void {
    if (this._resolve) {
      const resolve = this._resolve;
      this._resolve = null;
      resolve(result);
      if (!this.isDisposed) {
        this.dispose();
      }
    }
  }

  /**
   * The dashboard the form describes, or null after showing what is wrong with it.
   */
  private _readForm(): INewDashboard | null {
    const name = this._name.value.trim();
    if (!DASHBOARD_NAME.test(name)) {
      this._nameError.textContent =
        'Use 1–63 lowercase letters, digits or “-”, starting with a letter or digit.';
      this._name.focus();
      return null;
    }
    const spec: INewDashboard = { path: this._path, name };
    const title = this._title.value.trim();
    if (title) {
      spec.title = title;
    }
    const description = this._description.value.trim();
    if (description) {
      spec.description = description;
    }
    if (this._job.value) {
      spec.job_id = Number(this._job.value);
    }
    const users = words(this._users.value);
    const groups = words(this._groups.value);
    if (users.length > 0 || groups.length > 0 || this._viewers.checked) {
      spec.share = { users, groups, viewers: this._viewers.checked };
    }
    return spec;
  }

  private async _submit(): Promise<void> {
    if (this._busy) {
      return;
    }
    this._error.textContent = '';
    const spec = this._readForm();
    if (spec === null) {
      return;
    }
    this._busy = true;
    this._submitButton.disabled = true;
    this._submitButton.textContent = 'Publishing…';
    try {
      this._finish(await this._client.publish(spec));
    } catch (error) {
      this._error.textContent = (error as Error).message;
      this._busy = false;
      this._submitButton.disabled = false;
      this._submitButton.textContent = 'Publish';
    }
  }

  private _client: DashboardsClient;
  private _path: string;
  private _resolve: ((result: IDashboard | null) => void) | null = null;
  private _name: HTMLInputElement;
  private _nameError: HTMLDivElement;
  private _title: HTMLInputElement;
  private _description: HTMLInputElement;
  private _job: HTMLSelectElement;
  private _users: HTMLInputElement;
  private _groups: HTMLInputElement;
  private _viewers: HTMLInputElement;
  private _error: HTMLDivElement;
  private _submitButton: HTMLButtonElement;
  private _busy = false;
}

/**
 * A form field: its label (naming the input for assistive technology), the input, notes.
 */
function field(
  text: string,
  input: HTMLInputElement | HTMLSelectElement,
  ...after: HTMLElement[]
): HTMLDivElement {
  const node = element('div', 'jp-himalia-schedule-field');
  const label = element('label', '', text);
  label.htmlFor = input.id;
  node.append(label, input, ...after);
  return node;
}
