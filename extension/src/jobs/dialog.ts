import { Widget } from '@lumino/widgets';

import { element } from '../dom';
import {
  HimaliaClient,
  IJob,
  IJobParameter,
  IJobRun,
  INewJob
} from '../handler';
import { formatInZone } from './panel';

/**
 * How long typing in the cron field pauses before its next times are asked for, in ms.
 */
export const PREVIEW_DELAY = 300;

/**
 * How many next times the schedule preview lists.
 */
export const PREVIEW_COUNT = 5;

/**
 * What a job name may be (the platform API's rule).
 */
export const JOB_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;

/**
 * Options of the Schedule dialog.
 */
export interface IScheduleDialogOptions {
  client: HimaliaClient;
  /** The notebook's path from the server's root, saved. */
  path: string;
}

/**
 * What the Schedule dialog made: the job, and its first run when it has no schedule.
 */
export interface IScheduled {
  job: IJob;
  run: IJobRun | null;
  /** Why the first run could not be started, when the job was made but that failed. */
  runError?: string;
}

/**
 * Open the Schedule dialog for a notebook; resolves with what it made, or null when closed.
 */
export function scheduleNotebook(
  options: IScheduleDialogOptions
): Promise<IScheduled | null> {
  const dialog = new ScheduleDialog(options);
  Widget.attach(dialog, document.body);
  return dialog.result;
}

/**
 * A job name for a notebook: its file name without `.ipynb`, in the characters names allow.
 */
export function jobNameFor(path: string): string {
  const file = path.split('/').pop() ?? '';
  const stem = file.replace(/\.ipynb$/, '');
  const name = stem
    .replace(/[^A-Za-z0-9_.-]+/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, 100);
  return name || 'notebook';
}

/**
 * The time zones to choose from: the browser's own first, then UTC, then every other one the
 * browser knows.
 */
export function timeZones(): string[] {
  const own = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  let known: string[] = [];
  try {
    known = Intl.supportedValuesOf('timeZone');
  } catch {
    known = [];
  }
  const first = own === 'UTC' ? ['UTC'] : [own, 'UTC'];
  return [...first, ...known.filter(zone => !first.includes(zone))];
}

/**
 * The outcome of reading one form field: a value, nothing changed, or what is wrong.
 */
type FieldValue =
  | { kind: 'value'; value: unknown }
  | { kind: 'unchanged' }
  | { kind: 'error'; message: string };

/**
 * One parameter's input in the form, made for its type.
 */
class ParameterField {
  constructor(
    readonly name: string,
    readonly spec: IJobParameter
  ) {
    const type = spec.type ?? '';
    this.node = element('div', 'jp-himalia-schedule-field jp-himalia-param');
    this.node.dataset.parameter = name;
    this.node.dataset.type = type || 'any';
    const id = `jp-himalia-param-${name}-${++ParameterField._count}`;
    const label = element('label', 'jp-himalia-param-label');
    label.htmlFor = id;
    label.append(
      element('span', 'jp-himalia-param-name', name),
      element('span', 'jp-himalia-param-type', type || 'any')
    );
    this._error = element('div', 'jp-himalia-field-error');
    this._error.hidden = true;
    const defaultValue = spec.default;

    if (type === 'bool') {
      const box = element('input', 'jp-himalia-param-input');
      box.type = 'checkbox';
      box.checked = defaultValue === true;
      this._input = box;
    } else if (type === 'list' || type === 'dict') {
      const area = element('textarea', 'jp-mod-styled jp-himalia-param-input');
      area.rows = 2;
      area.spellcheck = false;
      area.value = JSON.stringify(defaultValue ?? (type === 'list' ? [] : {}));
      this._input = area;
    } else {
      const input = element('input', 'jp-mod-styled jp-himalia-param-input');
      if (type === 'int' || type === 'float') {
        input.type = 'number';
        input.step = type === 'int' ? '1' : 'any';
        input.value = typeof defaultValue === 'number' ? String(defaultValue) : '';
      } else {
        input.type = 'text';
        input.value =
          typeof defaultValue === 'string'
            ? defaultValue
            : JSON.stringify(defaultValue ?? null);
      }
      this._input = input;
    }
    this._input.id = id;
    this._input.name = `param-${name}`;
    this._input.addEventListener('input', () => this.showError(''));
    this.node.append(label, this._input, this._error);
    if (spec.help) {
      this._input.title = spec.help;
      this.node.appendChild(element('div', 'jp-himalia-param-help', spec.help));
    }
  }

  readonly node: HTMLDivElement;

  /**
   * The value typed, checked against the parameter's type; unchanged when it is the default.
   */
  read(): FieldValue {
    const value = this._parse();
    if (value.kind !== 'value') {
      return value;
    }
    const same =
      JSON.stringify(value.value) === JSON.stringify(this.spec.default);
    return same ? { kind: 'unchanged' } : value;
  }

  showError(message: string): void {
    this._error.textContent = message;
    this._error.hidden = message === '';
    this._input.setAttribute('aria-invalid', String(message !== ''));
  }

  focus(): void {
    this._input.focus();
  }

  private _parse(): FieldValue {
    const type = this.spec.type ?? '';
    const input = this._input;
    if (input instanceof HTMLInputElement && input.type === 'checkbox') {
      return { kind: 'value', value: input.checked };
    }
    const text = input.value.trim();
    if (type === 'int' || type === 'float') {
      const number = Number(text);
      if (text === '' || !Number.isFinite(number)) {
        return { kind: 'error', message: 'Give a number.' };
      }
      if (type === 'int' && !Number.isInteger(number)) {
        return { kind: 'error', message: 'Give a whole number.' };
      }
      return { kind: 'value', value: number };
    }
    if (type === 'str') {
      return { kind: 'value', value: input.value };
    }
    if (type === 'list' || type === 'dict') {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        return { kind: 'error', message: `Give a JSON ${type === 'list' ? 'array' : 'object'}.` };
      }
      const isList = Array.isArray(parsed);
      const isDict = typeof parsed === 'object' && parsed !== null && !isList;
      if ((type === 'list' && !isList) || (type === 'dict' && !isDict)) {
        return { kind: 'error', message: `Give a JSON ${type === 'list' ? 'array' : 'object'}.` };
      }
      return { kind: 'value', value: parsed };
    }
    // A parameter of no checked type: JSON when it reads as JSON, else the text itself. A
    // default that is source text (`np.pi`) is sent only when changed.
    const unchangedText =
      typeof this.spec.default === 'string'
        ? this.spec.default
        : JSON.stringify(this.spec.default ?? null);
    if (input.value === unchangedText) {
      return { kind: 'unchanged' };
    }
    try {
      return { kind: 'value', value: JSON.parse(text) };
    } catch {
      return { kind: 'value', value: input.value };
    }
  }

  private _input: HTMLInputElement | HTMLTextAreaElement;
  private _error: HTMLDivElement;
  private static _count = 0;
}

/**
 * The "Schedule" dialog: a job of one notebook with its parameters, a cron schedule (its next
 * times previewed in the chosen zone), profile, timeout and retries. Without a schedule the job
 * is also run once at once.
 */
export class ScheduleDialog extends Widget {
  constructor(options: IScheduleDialogOptions) {
    super();
    this._client = options.client;
    this._path = options.path;
    this.addClass('jp-Dialog');
    this.addClass('jp-himalia-schedule-dialog');
    this.result = new Promise(resolve => (this._resolve = resolve));

    const form = element('form', 'jp-Dialog-content jp-himalia-schedule');
    form.noValidate = true;
    form.setAttribute('role', 'dialog');
    form.setAttribute('aria-modal', 'true');
    form.setAttribute('aria-labelledby', 'jp-himalia-schedule-title');
    form.addEventListener('submit', event => {
      event.preventDefault();
      void this._submit();
    });

    const header = element('div', 'jp-Dialog-header jp-himalia-schedule-header');
    const title = element('h2', 'jp-himalia-schedule-title', 'Schedule notebook');
    title.id = 'jp-himalia-schedule-title';
    header.append(
      title,
      element('div', 'jp-himalia-schedule-path', this._path)
    );

    const body = element('div', 'jp-Dialog-body jp-himalia-schedule-body');

    this._name = element('input', 'jp-mod-styled');
    this._name.name = 'name';
    this._name.required = true;
    this._name.value = jobNameFor(this._path);
    this._name.addEventListener('input', () => this._nameError.replaceChildren());
    this._nameError = element('div', 'jp-himalia-field-error');

    this._parameters = element('fieldset', 'jp-himalia-schedule-parameters');
    this._parameters.append(
      element('legend', '', 'Parameters'),
      element('p', 'jp-himalia-note', 'Reading the notebook’s parameters…')
    );

    this._cron = element('input', 'jp-mod-styled jp-himalia-cron');
    this._cron.name = 'schedule';
    this._cron.placeholder = 'e.g. 0 2 * * *';
    this._cron.spellcheck = false;
    this._cron.setAttribute('autocomplete', 'off');
    this._cron.addEventListener('input', () => this._previewSoon());
    this._preview = element('div', 'jp-himalia-cron-preview');
    this._preview.setAttribute('role', 'status');
    this._preview.setAttribute('aria-live', 'polite');

    this._zone = element('select', 'jp-mod-styled jp-himalia-timezone');
    this._zone.name = 'timezone';
    for (const zone of timeZones()) {
      this._zone.appendChild(new Option(zone, zone));
    }
    this._zone.addEventListener('change', () => this._previewSoon(0));

    this._profile = element('input', 'jp-mod-styled');
    this._profile.name = 'profile';
    this._profile.placeholder = 'the platform’s default';

    // The platform's defaults.
    this._timeout = wholeNumberInput('timeout_seconds', 1, 3600);
    this._retries = wholeNumberInput('max_retries', 0, 0);

    this._error = element('div', 'jp-himalia-state jp-himalia-error jp-himalia-schedule-error');
    this._error.setAttribute('role', 'alert');

    body.append(
      labelled('Job name', this._name, this._nameError),
      this._parameters,
      labelled(
        'Schedule (cron)',
        this._cron,
        element(
          'div',
          'jp-himalia-note',
          'Minute hour day-of-month month day-of-week. Leave it empty to run the job once now.'
        ),
        this._preview
      ),
      labelled('Time zone', this._zone),
      labelled('Profile', this._profile),
      row(
        labelled('Timeout (seconds)', this._timeout),
        labelled('Retries', this._retries)
      ),
      this._error
    );

    const footer = element('div', 'jp-Dialog-footer');
    const cancel = element(
      'button',
      'jp-Dialog-button jp-mod-reject jp-mod-styled',
      'Cancel'
    );
    cancel.type = 'button';
    cancel.addEventListener('click', () => this.close());
    this._submitButton = element(
      'button',
      'jp-Dialog-button jp-mod-accept jp-mod-styled',
      'Schedule'
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
    this._showPreview();
    void this._loadParameters();
  }

  /**
   * Resolves with what the dialog made when it closes; null when it was cancelled.
   */
  readonly result: Promise<IScheduled | null>;

  /**
   * Close without scheduling anything (unless it already did).
   */
  close(): void {
    this._finish(null);
  }

  dispose(): void {
    window.clearTimeout(this._previewTimer);
    this._finish(null);
    super.dispose();
  }

  protected onAfterAttach(): void {
    this._name.focus();
    this._name.select();
  }

  private _finish(result: IScheduled | null): void {
    if (this._resolve) {
      const resolve = this._resolve;
      this._resolve = null;
      resolve(result);
      if (!this.isDisposed) {
        this.dispose();
      }
    }
  }

  private async _loadParameters(): Promise<void> {
    const legend = element('legend', '', 'Parameters');
    try {
      const { parameters } = await this._client.inspectNotebook(this._path);
      this._fields = Object.entries(parameters).map(
        ([name, spec]) => new ParameterField(name, spec)
      );
      if (this._fields.length === 0) {
        this._parameters.replaceChildren(
          legend,
          element(
            'p',
            'jp-himalia-note',
            'This notebook has no cell tagged “parameters”: it runs as it is.'
          )
        );
      } else {
        this._parameters.replaceChildren(legend, ...this._fields.map(f => f.node));
      }
    } catch (error) {
      this._parameters.replaceChildren(
        legend,
        element('p', 'jp-himalia-state jp-himalia-error', (error as Error).message)
      );
    }
  }

  private _previewSoon(delay = PREVIEW_DELAY): void {
    window.clearTimeout(this._previewTimer);
    this._previewTimer = window.setTimeout(() => void this._showPreview(), delay);
  }

  private async _showPreview(): Promise<void> {
    const request = ++this._previews;
    const cron = this._cron.value.trim();
    const zone = this._zone.value;
    this._preview.classList.remove('jp-himalia-error');
    if (cron === '') {
      this._preview.replaceChildren(
        element('span', 'jp-himalia-note', 'No schedule: the job runs once now, and whenever you start it.')
      );
      return;
    }
    try {
      const times = await this._client.schedulePreview(cron, zone, PREVIEW_COUNT);
      if (request !== this._previews) {
        return;
      }
      const list = element('ol', 'jp-himalia-cron-times');
      for (const iso of times) {
        const time = element('time', '', formatInZone(iso, zone));
        time.dateTime = iso;
        list.appendChild(element('li')).appendChild(time);
      }
      this._preview.replaceChildren(
        element('span', 'jp-himalia-cron-heading', `Next runs (${zone}):`),
        list
      );
    } catch (error) {
      if (request === this._previews) {
        this._preview.classList.add('jp-himalia-error');
        this._preview.replaceChildren(
          element('span', 'jp-himalia-cron-problem', (error as Error).message)
        );
      }
    }
  }

  /**
   * The job the form describes, or null after showing what is wrong with it.
   */
  private _readForm(): INewJob | null {
    let firstBad: { focus(): void } | null = null;
    const name = this._name.value.trim();
    if (!JOB_NAME.test(name)) {
      this._nameError.textContent =
        'Use 1–100 letters, digits, “.”, “_” or “-”, starting with a letter or digit.';
      firstBad = this._name;
    }
    const parameters: { [name: string]: unknown } = {};
    for (const field of this._fields) {
      const read = field.read();
      if (read.kind === 'error') {
        field.showError(read.message);
        firstBad = firstBad ?? field;
      } else if (read.kind === 'value') {
        parameters[field.name] = read.value;
      }
    }
    const timeout = Number(this._timeout.value);
    const retries = Number(this._retries.value);
    if (!Number.isInteger(timeout) || timeout < 1) {
      this._showError('Timeout: give a whole number of seconds, 1 or more.');
      firstBad = firstBad ?? this._timeout;
    } else if (!Number.isInteger(retries) || retries < 0) {
      this._showError('Retries: give a whole number, 0 or more.');
      firstBad = firstBad ?? this._retries;
    }
    if (firstBad) {
      firstBad.focus();
      return null;
    }
    const job: INewJob = {
      path: this._path,
      name,
      timezone: this._zone.value,
      timeout_seconds: timeout,
      max_retries: retries
    };
    if (Object.keys(parameters).length > 0) {
      job.parameters = parameters;
    }
    const cron = this._cron.value.trim();
    if (cron) {
      job.schedule = cron;
    }
    const profile = this._profile.value.trim();
    if (profile) {
      job.profile = profile;
    }
    return job;
  }

  private async _submit(): Promise<void> {
    if (this._busy) {
      return;
    }
    this._showError('');
    const spec = this._readForm();
    if (spec === null) {
      return;
    }
    this._busy = true;
    this._submitButton.disabled = true;
    this._submitButton.textContent = 'Scheduling…';
    let job: IJob;
    try {
      job = await this._client.createJob(spec);
    } catch (error) {
      this._showError((error as Error).message);
      this._busy = false;
      this._submitButton.disabled = false;
      this._submitButton.textContent = 'Schedule';
      return;
    }
    let result: IScheduled = { job, run: null };
    if (!spec.schedule) {
      try {
        result = { job, run: await this._client.runJob(job.id) };
      } catch (error) {
        result = { job, run: null, runError: (error as Error).message };
      }
    }
    this._finish(result);
  }

  private _showError(message: string): void {
    this._error.textContent = message;
  }

  private _client: HimaliaClient;
  private _path: string;
  private _resolve: ((result: IScheduled | null) => void) | null = null;
  private _name: HTMLInputElement;
  private _nameError: HTMLDivElement;
  private _parameters: HTMLFieldSetElement;
  private _fields: ParameterField[] = [];
  private _cron: HTMLInputElement;
  private _preview: HTMLDivElement;
  private _zone: HTMLSelectElement;
  private _profile: HTMLInputElement;
  private _timeout: HTMLInputElement;
  private _retries: HTMLInputElement;
  private _error: HTMLDivElement;
  private _submitButton: HTMLButtonElement;
  private _previewTimer = 0;
  private _previews = 0;
  private _busy = false;
}

/**
 * A form field: its label (which names the input for assistive technology) and what follows.
 */
function labelled(
  text: string,
  input: HTMLInputElement | HTMLSelectElement,
  ...after: HTMLElement[]
): HTMLDivElement {
  const field = element('div', 'jp-himalia-schedule-field');
  const label = element('label', '', text);
  input.id = input.id || `jp-himalia-schedule-${input.name}`;
  label.htmlFor = input.id;
  field.append(label, input, ...after);
  return field;
}

function wholeNumberInput(name: string, min: number, value: number): HTMLInputElement {
  const input = element('input', 'jp-mod-styled');
  input.name = name;
  input.type = 'number';
  input.min = String(min);
  input.step = '1';
  input.value = String(value);
  return input;
}

function row(...fields: HTMLElement[]): HTMLDivElement {
  const node = element('div', 'jp-himalia-schedule-row');
  node.append(...fields);
  return node;
}
