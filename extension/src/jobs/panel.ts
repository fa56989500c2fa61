import { Dialog, showDialog } from '@jupyterlab/apputils';
import { LabIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { actionButton, element, panelHeader, reconcile } from '../dom';
import {
  ACTIVE_RUN_STATES,
  HimaliaClient,
  IJob,
  IJobRun
} from '../handler';

/**
 * A clock face over a calendar page: notebooks that run on a schedule.
 */
const JOBS_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <path class="jp-icon3" fill="#616161" d="M5 3h2v2h6V3h2v2h2a2 2 0 0 1 2 2v3h-2V9H5v10h5v2H5a2 2 0 0 1-2-2V7a2 2 0 0 1 2-2h0V3z"/>
  <path class="jp-icon3" fill="#616161" d="M17 12a5 5 0 1 1 0 10 5 5 0 0 1 0-10zm-.75 2v3.3l2.6 1.6.75-1.2-1.85-1.15V14h-1.5z"/>
</svg>`;

/**
 * The Jobs panel's sidebar icon, also the Schedule command's.
 */
export const jobsIcon = new LabIcon({ name: 'himalia:jobs', svgstr: JOBS_SVG });

/**
 * How often runs that have not ended are asked about, in ms.
 */
export const POLL_INTERVAL = 1500;

/**
 * How many of each job's latest runs the panel shows.
 */
export const RUNS_PER_JOB = 10;

/**
 * How long, after a run ends, the panel keeps asking for its HTML (rendered just after), in ms.
 */
export const HTML_WAIT = 60_000;

/**
 * Options of the Jobs panel.
 */
export interface IJobsPanelOptions {
  /** The REST client the panel reads jobs and runs through. */
  client: HimaliaClient;
  /** Show a widget (a run's output or logs) in the main area. */
  open: (widget: Widget) => void;
}

/**
 * What the panel keeps of one job's row.
 */
interface IJobView {
  job: IJob;
  node: HTMLLIElement;
  name: HTMLElement;
  paused: HTMLElement;
  schedule: HTMLElement;
  next: HTMLElement;
  pause: HTMLButtonElement;
  error: HTMLElement;
  runs: HTMLUListElement;
  noRuns: HTMLElement;
  runViews: Map<number, IRunView>;
}

/**
 * What the panel keeps of one run's row; it is updated in place, so a button is never
 * replaced under the pointer while the run is followed.
 */
interface IRunView {
  run: IJobRun;
  node: HTMLLIElement;
  state: HTMLElement;
  trigger: HTMLElement;
  when: HTMLTimeElement;
  duration: HTMLElement;
  progress: HTMLElement;
  bar: HTMLProgressElement;
  cells: HTMLElement;
  problem: HTMLElement;
  cancel: HTMLButtonElement;
  rerun: HTMLButtonElement;
  output: HTMLButtonElement;
  logs: HTMLButtonElement;
}

/**
 * Left-sidebar panel: the user's scheduled notebook jobs, each with its schedule, next run and
 * latest runs; runs that have not ended are followed live (cells done of all), and each run can
 * be cancelled, run again, and its output or logs opened in the main area.
 */
export class JobsPanel extends Widget {
  constructor(options: IJobsPanelOptions) {
    super();
    this._client = options.client;
    this._open = options.open;
    this.id = 'himalia-jobs';
    this.addClass('jp-himalia-jobs');
    this.title.icon = jobsIcon;
    this.title.caption = 'Jobs';

    const { header, refreshButton } = panelHeader('Jobs', () => void this.refresh());
    this._refreshButton = refreshButton;

    this._state = element('div', 'jp-himalia-state');
    this._state.setAttribute('role', 'status');
    this._list = element('ul', 'jp-himalia-job-list');
    this.node.append(header, this._state, this._list);
    this.node.dataset.polling = 'false';
  }

  /**
   * Whether runs that have not ended are being followed.
   */
  get polling(): boolean {
    return this._pollTimer !== 0;
  }

  /**
   * Reload the jobs and their latest runs; failures are shown in the panel.
   */
  async refresh(): Promise<void> {
    const request = ++this._requests;
    this._refreshButton.disabled = true;
    if (this._views.size === 0) {
      this._showState('Loading…', false);
    }
    try {
      const jobs = await this._client.jobs();
      if (request !== this._requests || this.isDisposed) {
        return;
      }
      this._showJobs(jobs);
      this._showState(
        jobs.length === 0
          ? 'No jobs yet. Right-click a notebook and choose “Schedule…”.'
          : '',
        false
      );
      await Promise.allSettled(
        Array.from(this._views.values()).map(view => this._loadRuns(view))
      );
    } catch (error) {
      if (request === this._requests) {
        this._showState((error as Error).message, true);
      }
    } finally {
      if (request === this._requests) {
        this._refreshButton.disabled = false;
        this._pollSoon();
      }
    }
  }

  /**
   * Reload, then bring a job (one just made) into view.
   */
  async reveal(jobId: number): Promise<void> {
    await this.refresh();
    const view = this._views.get(jobId);
    if (view) {
      for (const other of this._views.values()) {
        other.node.classList.toggle('jp-mod-selected', other === view);
      }
      view.node.scrollIntoView({ block: 'nearest' });
    }
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

  private _showJobs(jobs: IJob[]): void {
    reconcile(this._list, jobs, this._views, {
      key: job => job.id,
      make: job => this._makeJobView(job),
      update: (view, job) => this._updateJob(view, job)
    });
  }

  private _makeJobView(job: IJob): IJobView {
    const node = element('li', 'jp-himalia-job');
    node.dataset.jobId = String(job.id);
    const name = element('span', 'jp-himalia-job-name');
    const paused = element('span', 'jp-himalia-badge jp-himalia-job-paused', 'paused');
    const top = element('div', 'jp-himalia-job-top');
    top.append(name, paused);

    const schedule = element('div', 'jp-himalia-job-schedule');
    const next = element('div', 'jp-himalia-job-next');

    const runNow = actionButton('Run now', 'jp-himalia-job-run-now');
    const pause = actionButton('Pause', 'jp-himalia-job-pause');
    const remove = actionButton('Delete', 'jp-himalia-job-delete');
    const actions = element('div', 'jp-himalia-job-actions');
    actions.append(runNow, pause, remove);

    const error = element('div', 'jp-himalia-state jp-himalia-error jp-himalia-job-error');
    error.hidden = true;
    const runs = element('ul', 'jp-himalia-job-runs');
    runs.setAttribute('aria-label', `Runs of ${job.name}`);
    const noRuns = element('div', 'jp-himalia-note', 'No runs yet.');
    noRuns.hidden = true;

    node.append(top, schedule, next, actions, error, runs, noRuns);
    const view: IJobView = {
      job,
      node,
      name,
      paused,
      schedule,
      next,
      pause,
      error,
      runs,
      noRuns,
      runViews: new Map()
    };
    runNow.addEventListener('click', () =>
      this._act(view, async () => {
        await this._client.runJob(view.job.id);
        await this._loadRuns(view);
      })
    );
    pause.addEventListener('click', () =>
      this._act(view, async () => {
        const changed = await this._client.updateJob(view.job.id, {
          paused: !view.job.paused
        });
        this._updateJob(view, changed);
      })
    );
    remove.addEventListener('click', () => void this._delete(view));
    return view;
  }

  private _updateJob(view: IJobView, job: IJob): void {
    view.job = job;
    view.name.textContent = job.name;
    view.name.title = job.source_path || job.name;
    view.paused.hidden = !job.paused;
    view.node.classList.toggle('jp-mod-paused', job.paused);
    view.schedule.textContent = job.schedule
      ? `${job.schedule} (${job.timezone})`
      : 'Runs when started';
    view.schedule.title = job.schedule ? 'Cron schedule and its time zone' : '';
    const next = job.next_runs[0];
    view.next.hidden = !next;
    view.next.textContent = next ? `Next: ${formatInZone(next, job.timezone)}` : '';
    view.pause.hidden = !job.schedule;
    view.pause.textContent = job.paused ? 'Resume' : 'Pause';
  }

  private async _loadRuns(view: IJobView): Promise<void> {
    try {
      const runs = await this._client.jobRuns(view.job.id, RUNS_PER_JOB);
      if (this._views.get(view.job.id) === view) {
        this._showRuns(view, runs);
        this._showJobError(view, '');
      }
    } catch (error) {
      this._showJobError(view, (error as Error).message);
    }
  }

  private _showRuns(view: IJobView, runs: IJobRun[]): void {
    reconcile(view.runs, runs, view.runViews, {
      key: run => run.id,
      make: run => this._makeRunView(run),
      update: (runView, run) => this._updateRun(runView, run)
    });
    view.noRuns.hidden = runs.length > 0;
  }

  private _makeRunView(run: IJobRun): IRunView {
    const node = element('li', 'jp-himalia-job-run');
    node.dataset.runId = String(run.id);
    const state = element('span', 'jp-himalia-badge jp-himalia-run-state');
    const id = element('span', 'jp-himalia-run-id', `#${run.id}`);
    const trigger = element('span', 'jp-himalia-run-trigger');
    const top = element('div', 'jp-himalia-job-run-top');
    top.append(state, id, trigger);

    const when = element('time', 'jp-himalia-run-when');
    const duration = element('span', 'jp-himalia-run-duration');
    const times = element('div', 'jp-himalia-job-run-times');
    times.append(when, duration);

    const progress = element('div', 'jp-himalia-run-progress');
    const bar = element('progress');
    const cells = element('span', 'jp-himalia-run-cells');
    progress.append(bar, cells);

    const problem = element('div', 'jp-himalia-run-problem');

    const cancel = actionButton('Cancel', 'jp-himalia-run-cancel');
    const rerun = actionButton('Rerun', 'jp-himalia-run-rerun');
    const output = actionButton('Output', 'jp-himalia-run-output');
    const logs = actionButton('Logs', 'jp-himalia-run-logs');
    const actions = element('div', 'jp-himalia-job-run-actions');
    actions.append(cancel, rerun, output, logs);

    node.append(top, times, progress, problem, actions);
    const view: IRunView = {
      run,
      node,
      state,
      trigger,
      when,
      duration,
      progress,
      bar,
      cells,
      problem,
      cancel,
      rerun,
      output,
      logs
    };
    cancel.addEventListener('click', () =>
      this._actOnRun(view, async () => {
        this._updateRun(view, await this._client.cancelRun(view.run.id));
      })
    );
    rerun.addEventListener('click', () =>
      this._actOnRun(view, async () => {
        await this._client.rerun(view.run.id);
        const job = this._views.get(view.run.job_id);
        if (job) {
          await this._loadRuns(job);
        }
      })
    );
    output.addEventListener('click', () => this._openOutput(view.run));
    logs.addEventListener('click', () => this._openLogs(view.run));
    return view;
  }

  private _updateRun(view: IRunView, run: IJobRun): void {
    view.run = run;
    const active = isActive(run);
    view.node.dataset.state = run.state;
    view.state.className = `jp-himalia-badge jp-himalia-run-state jp-himalia-run-${run.state}`;
    view.state.textContent = run.state.replace(/_/g, ' ');
    view.trigger.textContent =
      run.attempt > 1 ? `${run.trigger}, attempt ${run.attempt}` : run.trigger;

    const started = run.started_at ?? run.created_at;
    view.when.textContent = started ? formatWhen(started) : '';
    view.when.dateTime = started ?? '';
    view.when.title = started
      ? `${run.started_at ? 'Started' : 'Queued'} ${new Date(started).toLocaleString()}`
      : '';
    view.duration.textContent =
      run.duration_seconds === null ? '' : formatDuration(run.duration_seconds);

    view.progress.hidden = !active;
    const { cells_done: done, cells_total: total } = run.progress;
    if (run.state === 'queued' || total === 0) {
      view.bar.removeAttribute('value');
      view.cells.textContent = run.state === 'queued' ? 'waiting to start' : 'starting';
    } else {
      view.bar.max = total;
      view.bar.value = done;
      view.cells.textContent = `${done} / ${total} cells`;
    }
    view.bar.setAttribute('aria-label', `Progress of run ${run.id}`);

    view.problem.textContent = problemOf(run);
    view.problem.hidden = view.problem.textContent === '';

    view.cancel.hidden = !active;
    view.cancel.disabled = run.cancel_requested;
    view.rerun.hidden = active;
    const waiting = this._waitingForHTML(run);
    view.output.hidden = !run.outputs.html && !waiting;
    view.output.disabled = !run.outputs.html;
    view.output.title = run.outputs.html
      ? `Open the output of run ${run.id}`
      : 'The HTML output appears shortly after the run ends.';
    view.logs.hidden = run.state === 'queued';
  }

  /**
   * Whether an ended run's HTML is still to come: it is rendered just after the run ends.
   */
  private _waitingForHTML(run: IJobRun): boolean {
    if (isActive(run) || run.outputs.html || !run.outputs.ipynb) {
      this._endedWithoutHTML.delete(run.id);
      return false;
    }
    const since = this._endedWithoutHTML.get(run.id) ?? Date.now();
    this._endedWithoutHTML.set(run.id, since);
    return Date.now() - since < HTML_WAIT;
  }

  private _act(view: IJobView, work: () => Promise<void>): void {
    this._showJobError(view, '');
    void work()
      .catch(error => this._showJobError(view, (error as Error).message))
      .finally(() => this._pollSoon());
  }

  private _actOnRun(view: IRunView, work: () => Promise<void>): void {
    const job = this._views.get(view.run.job_id);
    if (job) {
      this._act(job, work);
    }
  }

  private _showJobError(view: IJobView, message: string): void {
    view.error.textContent = message;
    view.error.hidden = message === '';
  }

  private async _delete(view: IJobView): Promise<void> {
    const answer = await showDialog({
      title: `Delete job “${view.job.name}”?`,
      body: 'Its runs and their outputs are deleted with it.',
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
    });
    if (!answer.button.accept) {
      return;
    }
    this._act(view, async () => {
      await this._client.deleteJob(view.job.id);
      view.node.remove();
      this._views.delete(view.job.id);
      if (this._views.size === 0) {
        this._showState('No jobs yet.', false);
      }
    });
  }

  private _openOutput(run: IJobRun): void {
    this._show(`himalia-job-output-${run.id}`, () => new JobRunOutput(this._client, run));
  }

  private _openLogs(run: IJobRun): void {
    this._show(`himalia-job-logs-${run.id}`, () => new JobRunLogs(this._client, run));
  }

  private _show(id: string, make: () => Widget): void {
    let widget = this._opened.get(id);
    if (!widget || widget.isDisposed) {
      widget = make();
      this._opened.set(id, widget);
      widget.disposed.connect(() => this._opened.delete(id));
    }
    this._open(widget);
  }

  /**
   * Ask again in a moment about the jobs whose runs have not ended (or whose HTML is still to
   * come); stop when there are none, or when the panel is hidden.
   */
  private _pollSoon(): void {
    this._stopPolling();
    if (this.isDisposed || !this.isVisible) {
      return;
    }
    const due = Array.from(this._views.values()).filter(view =>
      Array.from(view.runViews.values()).some(
        ({ run }) => isActive(run) || this._waitingForHTML(run)
      )
    );
    if (due.length === 0) {
      return;
    }
    this.node.dataset.polling = 'true';
    this._pollTimer = window.setTimeout(async () => {
      this._pollTimer = 0;
      await Promise.allSettled(due.map(view => this._loadRuns(view)));
      this._pollSoon();
    }, POLL_INTERVAL);
  }

  private _stopPolling(): void {
    window.clearTimeout(this._pollTimer);
    this._pollTimer = 0;
    this.node.dataset.polling = 'false';
  }

  private _client: HimaliaClient;
  private _open: (widget: Widget) => void;
  private _refreshButton: HTMLButtonElement;
  private _state: HTMLDivElement;
  private _list: HTMLUListElement;
  private _views = new Map<number, IJobView>();
  private _opened = new Map<string, Widget>();
  private _endedWithoutHTML = new Map<number, number>();
  private _pollTimer = 0;
  private _requests = 0;
}

/**
 * A run's executed notebook, as HTML in a sandboxed frame: no script of the output runs, and
 * nothing in it can reach JupyterLab.
 */
export class JobRunOutput extends Widget {
  constructor(client: HimaliaClient, run: IJobRun) {
    super();
    this.id = `himalia-job-output-${run.id}`;
    this.addClass('jp-himalia-job-output');
    this.title.label = `${run.job} #${run.id}`;
    this.title.caption = `Output of run ${run.id} of job ${run.job}`;
    this.title.icon = jobsIcon;
    this.title.closable = true;
    this._state = element('div', 'jp-himalia-state', 'Loading the output…');
    this._frame = element('iframe', 'jp-himalia-job-output-frame');
    this._frame.setAttribute('sandbox', '');
    this._frame.title = this.title.caption;
    this.node.append(this._state, this._frame);
    void this._load(client, run.id);
  }

  private async _load(client: HimaliaClient, runId: number): Promise<void> {
    try {
      this._frame.srcdoc = await client.runOutputHTML(runId);
      this._state.hidden = true;
    } catch (error) {
      this._state.textContent = (error as Error).message;
      this._state.classList.add('jp-himalia-error');
    }
  }

  private _state: HTMLDivElement;
  private _frame: HTMLIFrameElement;
}

/**
 * A run's logs (the runner's, the kernel's stdout and stderr) as text.
 */
export class JobRunLogs extends Widget {
  constructor(client: HimaliaClient, run: IJobRun) {
    super();
    this.id = `himalia-job-logs-${run.id}`;
    this.addClass('jp-himalia-job-logs');
    this.title.label = `Logs of ${run.job} #${run.id}`;
    this.title.icon = jobsIcon;
    this.title.closable = true;
    this._text = element('pre', 'jp-himalia-job-logs-text', 'Loading the logs…');
    this.node.appendChild(this._text);
    void this._load(client, run.id);
  }

  private async _load(client: HimaliaClient, runId: number): Promise<void> {
    try {
      this._text.textContent = (await client.runLogs(runId)) || 'No logs yet.';
    } catch (error) {
      this._text.textContent = (error as Error).message;
      this._text.classList.add('jp-himalia-error');
    }
  }

  private _text: HTMLPreElement;
}

/**
 * Whether a run has not ended yet.
 */
export function isActive(run: IJobRun): boolean {
  return ACTIVE_RUN_STATES.includes(run.state);
}

/**
 * Why a run did not succeed, in one line: the failing cell's error, or the runner's reason.
 */
export function problemOf(run: IJobRun): string {
  if (run.state === 'failed' && run.error) {
    const where = Number.isInteger(run.error.cell) ? ` (cell ${run.error.cell})` : '';
    return `${run.error.ename}: ${run.error.evalue}${where}`;
  }
  return run.state === 'succeeded' ? '' : run.reason;
}

/**
 * A duration as people say it: `0.8 s`, `42 s`, `3 min 5 s`, `2 h 4 min`.
 */
export function formatDuration(seconds: number): string {
  if (seconds < 10) {
    return `${Math.round(seconds * 10) / 10} s`;
  }
  const whole = Math.round(seconds);
  if (whole < 60) {
    return `${whole} s`;
  }
  if (whole < 3600) {
    const s = whole % 60;
    return `${Math.floor(whole / 60)} min${s ? ` ${s} s` : ''}`;
  }
  const min = Math.floor((whole % 3600) / 60);
  return `${Math.floor(whole / 3600)} h${min ? ` ${min} min` : ''}`;
}

/**
 * A time in the browser's zone, short.
 */
export function formatWhen(iso: string): string {
  return new Date(iso).toLocaleString(undefined, {
    dateStyle: 'short',
    timeStyle: 'short'
  });
}

/**
 * A time as people read it, in a time zone: `Mon, 3 Mar 2031, 02:00 CET`.
 */
export function formatInZone(iso: string, timeZone: string): string {
  const when = new Date(iso);
  try {
    return when.toLocaleString(undefined, {
      timeZone,
      weekday: 'short',
      year: 'numeric',
      month: 'short',
      day: 'numeric',
      hour: '2-digit',
      minute: '2-digit',
      timeZoneName: 'short'
    });
  } catch {
    // A zone the platform knows but this browser does not.
    return when.toLocaleString();
  }
}
