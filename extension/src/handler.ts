import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/**
 * The caller as the platform API knows it.
 */
export interface IWhoAmI {
  name: string;
  roles: string[];
  scopes: string[];
}

/**
 * The state of one part of the platform (hub, proxy, database, a service).
 */
export interface IServiceHealth {
  ok: boolean;
  /** Internal URLs and errors: only administrators get them. */
  detail?: string;
}

/**
 * The platform's health: `ok` is true only when every part is.
 */
export interface IHealth {
  ok: boolean;
  services: { [name: string]: IServiceHealth };
}

/**
 * The reply of `GET <base>/himalia/api/status`.
 */
export interface IStatus {
  whoami: IWhoAmI;
  health: IHealth;
}

/**
 * Where the MLflow UI is, and whose runs "All of mine" lists
 * (`GET <base>/himalia/tracking/config`).
 */
export interface ITrackingConfig {
  /** The MLflow UI, ending in `/`: a path on this origin behind the hub, or a full URL. */
  ui_url: string;
  /** A run's page: `{experiment_id}` and `{run_id}` stand for the run's. */
  run_url_template: string;
  user: string;
  experiment: string;
}

/**
 * One MLflow run as the Runs panel shows it. Times are epoch milliseconds; a metric that is
 * not a finite number is null.
 */
export interface IRun {
  run_id: string;
  name: string;
  status: string;
  start_time: number | null;
  end_time: number | null;
  experiment_id: string;
  user: string;
  notebook: string | null;
  /** The latest value of each metric. */
  metrics: { [key: string]: number | null };
  params: { [key: string]: string };
  /** The run's `himalia.*` tags. */
  tags: { [key: string]: string };
  /** The run's page in the MLflow UI. */
  url: string;
}

/**
 * Which runs to list: those of one notebook, or all of the user's.
 */
export type RunScope = 'notebook' | 'mine';

/**
 * One page of runs, newest first (`GET <base>/himalia/tracking/runs`).
 */
export interface IRunsPage {
  scope: RunScope;
  notebook: string | null;
  runs: IRun[];
  /** Pass it back for the next page; null after the last one. */
  next_page_token: string | null;
}

/**
 * One logged value of a metric.
 */
export interface IMetricPoint {
  step: number;
  value: number | null;
  timestamp: number | null;
}

/**
 * Every logged value of one metric of one run, by step.
 */
export interface IMetricHistory {
  run_id: string;
  key: string;
  history: IMetricPoint[];
}

/**
 * How a param differs between two runs.
 */
export type ParamDiff = 'same' | 'changed' | 'only-in-a' | 'only-in-b';

/**
 * Two runs side by side (`GET <base>/himalia/tracking/compare`).
 */
export interface IRunComparison {
  a: IRun;
  b: IRun;
  params: { key: string; a: string | null; b: string | null; diff: ParamDiff }[];
  metrics: { key: string; a: number | null; b: number | null }[];
}

/**
 * What to list with {@link HimaliaClient.runs}.
 */
export interface IRunsQuery {
  scope: RunScope;
  /** The notebook's path from the server's root; required with scope `notebook`. */
  notebook?: string;
  maxResults?: number;
  pageToken?: string | null;
}

/**
 * One parameter of a notebook's cell tagged `parameters`, as papermill infers it: `type` is
 * `int`, `float`, `str`, `bool`, `list`, `dict`, or another name (or null) that is not checked.
 * A default that is not a Python literal is its source text.
 */
export interface IJobParameter {
  type: string | null;
  default: unknown;
  help: string;
}

/**
 * The parameters a job of a notebook takes, by name (`POST <base>/himalia/jobs/inspect`).
 */
export interface IJobParameters {
  parameters: { [name: string]: IJobParameter };
}

/**
 * A scheduled notebook job, as the platform API describes it. Times are ISO 8601 strings.
 */
export interface IJob {
  id: number;
  name: string;
  owner: string;
  version: number;
  /** A cron expression; null for a job that runs only when started. */
  schedule: string | null;
  timezone: string;
  profile: string;
  timeout_seconds: number;
  max_retries: number;
  paused: boolean;
  published: boolean;
  /** The current version's parameters, defaults included. */
  parameters: { [name: string]: IJobParameter };
  source_path: string;
  /** The next scheduled times (none for a paused or unscheduled job). */
  next_runs: string[];
  created_at: string | null;
  updated_at: string | null;
}

/**
 * Where a run is: the last four states are final.
 */
export type JobRunState =
  | 'queued'
  | 'running'
  | 'succeeded'
  | 'failed'
  | 'timed_out'
  | 'cancelled';

/**
 * The states in which a run has not ended yet.
 */
export const ACTIVE_RUN_STATES: ReadonlyArray<JobRunState> = ['queued', 'running'];

/**
 * The cell a failed run stopped at.
 */
export interface IJobRunError {
  cell: number;
  ename: string;
  evalue: string;
  traceback: string[];
}

/**
 * One execution of a job. Times are ISO 8601 strings.
 */
export interface IJobRun {
  id: number;
  job_id: number;
  job: string;
  owner: string;
  version: number;
  /** What started it: `schedule`, `manual`, `retry` or `rerun`. */
  trigger: string;
  attempt: number;
  parameters: { [name: string]: unknown };
  state: JobRunState;
  /** Why it ended as it did (a timeout, a cancellation, a lost kernel), or empty. */
  reason: string;
  error: IJobRunError | null;
  progress: { cells_done: number; cells_total: number; fraction: number };
  created_at: string | null;
  started_at: string | null;
  finished_at: string | null;
  duration_seconds: number | null;
  cancel_requested: boolean;
  /** Which outputs can be read now. */
  outputs: { ipynb: boolean; html: boolean };
}

/**
 * A new job from a notebook on this server (`POST <base>/himalia/jobs`); the server sends the
 * notebook as last saved.
 */
export interface INewJob {
  /** The notebook's path from the server's root. */
  path: string;
  name: string;
  /** Defaults that differ from the notebook's. */
  parameters?: { [name: string]: unknown };
  /** A cron expression; leave it out for a job that runs only when started. */
  schedule?: string;
  timezone?: string;
  profile?: string;
  timeout_seconds?: number;
  max_retries?: number;
}

/**
 * What {@link HimaliaClient.updateJob} may change.
 */
export interface IJobChanges {
  paused?: boolean;
  schedule?: string | null;
  timezone?: string;
  parameters?: { [name: string]: unknown };
  timeout_seconds?: number;
  max_retries?: number;
}

/**
 * How a deployment's served versions are doing: all healthy (`serving`), some not
 * (`degraded`), none (`down`), or none started yet (`pending`).
 */
export type DeploymentHealth = 'serving' | 'degraded' | 'down' | 'pending';

/**
 * Where a version is: built into a BentoML service, started, serving traffic, failed (see its
 * `reason`), or retired (no longer served).
 */
export type DeploymentVersionState =
  | 'building'
  | 'starting'
  | 'serving'
  | 'failed'
  | 'retired';

/**
 * One version of a deployment: a model served as one BentoML service. Times are ISO 8601.
 */
export interface IDeploymentVersion {
  version: number;
  state: DeploymentVersionState;
  /** Why it failed or was retired; null otherwise. */
  reason: string | null;
  /** The MLflow model served, e.g. `runs:/<run_id>/model`. */
  model_uri: string;
  run_id: string | null;
  bento_tag: string | null;
  /** The share of requests it gets, in percent. */
  traffic: number;
  replicas: number;
  created_by: string;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
  lineage: {
    notebook?: string;
    cell_hash?: string;
    cell_index?: number;
    job_run_id?: number;
  };
}

/**
 * A model deployment, served at `<hub>/models/<name>/`.
 */
export interface IDeployment {
  id: number;
  name: string;
  owner: string;
  /** The path of its endpoints below the hub's base URL: `/models/<name>/`. */
  url: string;
  shared_with: string[];
  created_at: string;
  updated_at: string;
  health: DeploymentHealth;
  /** Newest first. */
  versions: IDeploymentVersion[];
}

/**
 * A model to deploy (`POST <base>/himalia/deployments`): a new deployment, or a new version of
 * one of yours.
 */
export interface INewDeployment {
  /** A DNS label: a lowercase letter, then lowercase letters, digits and `-`. */
  name: string;
  /** An MLflow model URI, e.g. `runs:/<run_id>/model`. */
  model_uri: string;
  /** The new version's share of traffic while the others keep the rest; 0 swaps at once. */
  canary_percent?: number;
  replicas?: number;
}

/**
 * What a deploy started: the deployment and its new version (still building).
 */
export interface IDeployed {
  deployment: IDeployment;
  version: IDeploymentVersion;
}

/**
 * Requests and latency of one version over one minute; a latency is null without requests.
 */
export interface IDeploymentMinute {
  /** The minute, as an ISO 8601 time. */
  at: string;
  version: number;
  count: number;
  errors: number;
  p50_ms: number | null;
  p95_ms: number | null;
}

/**
 * Requests and latency of one version over the whole window.
 */
export interface IDeploymentTotals {
  count: number;
  errors: number;
  p50_ms: number | null;
  p95_ms: number | null;
}

/**
 * A deployment's recent traffic (`GET <base>/himalia/deployments/<name>/metrics`).
 */
export interface IDeploymentMetrics {
  buckets: IDeploymentMinute[];
  /** By version number (as a string). */
  totals: { [version: string]: IDeploymentTotals };
}

/**
 * An API key of a deployment, known by its prefix only.
 */
export interface IApiKey {
  id: number;
  /** The key's first characters (`hmk_<8 hex>`), to tell keys apart. */
  prefix: string;
  label: string;
  created_by: string;
  created_at: string;
  revoked_at: string | null;
  last_used_at: string | null;
}

/**
 * A key just made: the only answer that holds the whole `key`.
 */
export interface INewApiKey {
  id: number;
  prefix: string;
  label: string;
  created_at: string;
  key: string;
}

/**
 * A failed call to the himalia server extension, with a message meant for the user.
 */
export class HimaliaRequestError extends Error {
  /**
   * @param message - what went wrong, as the server or the network said it.
   * @param status - the HTTP status, or 0 when no answer came back.
   */
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
    this.name = 'HimaliaRequestError';
  }
}

/**
 * Typed client of the himalia server extension's REST API.
 */
export class HimaliaClient {
  /**
   * @param serverSettings - connection settings; the page's own server by default.
   */
  constructor(serverSettings?: ServerConnection.ISettings) {
    this.serverSettings = serverSettings ?? ServerConnection.makeSettings();
  }

  /**
   * Settings used to reach the Jupyter server.
   */
  readonly serverSettings: ServerConnection.ISettings;

  /**
   * Who the user is and how healthy the platform is.
   *
   * @throws {HimaliaRequestError} when the server cannot be reached or answers an error.
   */
  status(): Promise<IStatus> {
    return this.request<IStatus>('status');
  }

  /**
   * Where the MLflow UI is, and whose runs "mine" means.
   *
   * @throws {HimaliaRequestError} 503 when the server has no MLflow tracking URI.
   */
  trackingConfig(): Promise<ITrackingConfig> {
    return this.tracking<ITrackingConfig>('config');
  }

  /**
   * One page of runs of a notebook, or of all the user's runs, newest first.
   *
   * @throws {HimaliaRequestError} 502 when MLflow cannot be reached.
   */
  runs(query: IRunsQuery): Promise<IRunsPage> {
    const params = new URLSearchParams({ scope: query.scope });
    if (query.notebook) {
      params.set('notebook', query.notebook);
    }
    if (query.maxResults) {
      params.set('max_results', String(query.maxResults));
    }
    if (query.pageToken) {
      params.set('page_token', query.pageToken);
    }
    return this.tracking<IRunsPage>('runs', params);
  }

  /**
   * Every logged value of one metric of one run.
   *
   * @throws {HimaliaRequestError} 404 for an unknown run or metric.
   */
  metricHistory(runId: string, key: string): Promise<IMetricHistory> {
    return this.tracking<IMetricHistory>(
      `runs/${encodeURIComponent(runId)}/metrics/${encodeURIComponent(key)}`
    );
  }

  /**
   * Two runs side by side: params with a diff marker, and latest metrics.
   *
   * @throws {HimaliaRequestError} 404 when either run is unknown.
   */
  compareRuns(a: string, b: string): Promise<IRunComparison> {
    const params = new URLSearchParams({ a, b });
    return this.tracking<IRunComparison>('compare', params);
  }

  /**
   * Your scheduled notebook jobs (an administrator's: everyone's).
   *
   * @throws {HimaliaRequestError} 503 when the platform API cannot be reached.
   */
  async jobs(): Promise<IJob[]> {
    return (await this.jobsRequest<{ jobs: IJob[] }>('')).jobs;
  }

  /**
   * Make a job of a notebook on this server, as last saved.
   *
   * @throws {HimaliaRequestError} 422 naming the bad field, 409 for a name already taken,
   * 404 for a missing notebook.
   */
  createJob(job: INewJob): Promise<IJob> {
    return this.jobsRequest<IJob>('', {
      method: 'POST',
      body: JSON.stringify(job)
    });
  }

  /**
   * The typed parameters of a notebook on this server (its cell tagged `parameters`).
   */
  inspectNotebook(path: string): Promise<IJobParameters> {
    return this.jobsRequest<IJobParameters>('inspect', {
      method: 'POST',
      body: JSON.stringify({ path })
    });
  }

  /**
   * The next times a cron expression fires in a time zone, as ISO 8601 strings.
   *
   * @throws {HimaliaRequestError} 422 whose message starts with `schedule:` or `timezone:`.
   */
  async schedulePreview(
    cron: string,
    timezone: string,
    count = 5
  ): Promise<string[]> {
    const query = new URLSearchParams({ cron, timezone, count: String(count) });
    const reply = await this.jobsRequest<{ next: string[] }>(
      'schedule-preview',
      {},
      query
    );
    return reply.next;
  }

  /**
   * Change a job (pause or resume it, its schedule or defaults).
   */
  updateJob(jobId: number, changes: IJobChanges): Promise<IJob> {
    return this.jobsRequest<IJob>(`${jobId}`, {
      method: 'PATCH',
      body: JSON.stringify(changes)
    });
  }

  /**
   * Delete a job with its runs and outputs.
   *
   * @throws {HimaliaRequestError} 409 while one of its runs is running.
   */
  async deleteJob(jobId: number): Promise<void> {
    await this.send(this.jobsUrl(`${jobId}`), { method: 'DELETE' });
  }

  /**
   * A job's latest runs, newest first.
   */
  async jobRuns(jobId: number, limit = 10): Promise<IJobRun[]> {
    const query = new URLSearchParams({ limit: String(limit) });
    const reply = await this.jobsRequest<{ runs: IJobRun[] }>(
      `${jobId}/runs`,
      {},
      query
    );
    return reply.runs;
  }

  /**
   * Queue a run of a job now, with parameter overrides.
   */
  runJob(
    jobId: number,
    parameters: { [name: string]: unknown } = {}
  ): Promise<IJobRun> {
    return this.jobsRequest<IJobRun>(`${jobId}/runs`, {
      method: 'POST',
      body: JSON.stringify({ parameters })
    });
  }

  /**
   * One run: its state, progress, error and outputs.
   */
  jobRun(runId: number): Promise<IJobRun> {
    return this.jobsRequest<IJobRun>(`runs/${runId}`);
  }

  /**
   * Stop a queued or running run.
   */
  cancelRun(runId: number): Promise<IJobRun> {
    return this.jobsRequest<IJobRun>(`runs/${runId}/cancel`, { method: 'POST' });
  }

  /**
   * Run again exactly: the same version, parameters and inputs.
   */
  rerun(runId: number): Promise<IJobRun> {
    return this.jobsRequest<IJobRun>(`runs/${runId}/rerun`, { method: 'POST' });
  }

  /**
   * The executed notebook of a run, rendered as HTML.
   *
   * @throws {HimaliaRequestError} 404 before the HTML exists, 410 once retention removed it.
   */
  async runOutputHTML(runId: number): Promise<string> {
    const query = new URLSearchParams({ format: 'html' });
    const response = await this.send(
      `${this.jobsUrl(`runs/${runId}/output`)}?${query.toString()}`
    );
    return response.text();
  }

  /**
   * A run's logs: the runner's, then the kernel's stdout and stderr.
   */
  async runLogs(runId: number): Promise<string> {
    return (await this.send(this.jobsUrl(`runs/${runId}/logs`))).text();
  }

  /**
   * Your model deployments, those shared with you (an administrator's: all).
   *
   * @throws {HimaliaRequestError} 503 when the platform API cannot be reached.
   */
  async deployments(): Promise<IDeployment[]> {
    return (await this.deploymentsRequest<{ deployments: IDeployment[] }>(''))
      .deployments;
  }

  /**
   * One deployment with its versions, newest first.
   *
   * @throws {HimaliaRequestError} 404 for one that is not yours or shared with you.
   */
  deployment(name: string): Promise<IDeployment> {
    return this.deploymentsRequest<IDeployment>(encodeURIComponent(name));
  }

  /**
   * Deploy a model: a new deployment, or a new version (a canary when `canary_percent` > 0).
   *
   * @throws {HimaliaRequestError} 422 naming the bad field.
   */
  deploy(deployment: INewDeployment): Promise<IDeployed> {
    return this.deploymentsRequest<IDeployed>('', {
      method: 'POST',
      body: JSON.stringify(deployment)
    });
  }

  /**
   * Give the canary all the traffic and retire the version it replaces.
   *
   * @throws {HimaliaRequestError} 409 when there is no canary.
   */
  promote(name: string): Promise<IDeployment> {
    return this.deploymentsRequest<IDeployment>(
      `${encodeURIComponent(name)}/promote`,
      { method: 'POST' }
    );
  }

  /**
   * Retire the canary, or bring the previous version back.
   */
  rollback(name: string): Promise<IDeployment> {
    return this.deploymentsRequest<IDeployment>(
      `${encodeURIComponent(name)}/rollback`,
      { method: 'POST' }
    );
  }

  /**
   * Stop serving a deployment and delete it.
   */
  async undeploy(name: string): Promise<void> {
    await this.send(this.url('deployments', encodeURIComponent(name)), {
      method: 'DELETE'
    });
  }

  /**
   * Requests and latency of each version, minute by minute, over the last `minutes`.
   */
  deploymentMetrics(name: string, minutes = 60): Promise<IDeploymentMetrics> {
    return this.deploymentsRequest<IDeploymentMetrics>(
      `${encodeURIComponent(name)}/metrics`,
      {},
      new URLSearchParams({ minutes: String(minutes) })
    );
  }

  /**
   * A version's build log, then its serve log (the newest version's when none is given).
   */
  async deploymentLogs(name: string, version?: number, lines = 200): Promise<string> {
    const query = new URLSearchParams({ lines: String(lines) });
    if (version !== undefined) {
      query.set('version', String(version));
    }
    const url = this.url('deployments', `${encodeURIComponent(name)}/logs`, query);
    return (await this.send(url)).text();
  }

  /**
   * A deployment's API keys, by prefix, revoked ones included.
   */
  async apiKeys(name: string): Promise<IApiKey[]> {
    const reply = await this.deploymentsRequest<{ keys: IApiKey[] }>(
      `${encodeURIComponent(name)}/keys`
    );
    return reply.keys;
  }

  /**
   * A new API key; its whole value is in this answer only.
   */
  createApiKey(name: string, label: string): Promise<INewApiKey> {
    return this.deploymentsRequest<INewApiKey>(`${encodeURIComponent(name)}/keys`, {
      method: 'POST',
      body: JSON.stringify({ label })
    });
  }

  /**
   * Revoke an API key: requests with it are refused from now on.
   */
  async revokeApiKey(name: string, keyId: number): Promise<void> {
    await this.send(
      this.url('deployments', `${encodeURIComponent(name)}/keys/${keyId}`),
      { method: 'DELETE' }
    );
  }

  /**
   * The URL of `endpoint` in one area of the server extension's API (`api`, `tracking`,
   * `jobs`, `deployments`), with `query`.
   */
  private url(area: string, endpoint: string, query?: URLSearchParams): string {
    const url = URLExt.join(this.serverSettings.baseUrl, 'himalia', area, endpoint);
    // The query is added after joining: a path join must not touch its encoded characters.
    return query ? `${url}?${query.toString()}` : url;
  }

  private request<T>(endpoint: string, init: RequestInit = {}): Promise<T> {
    return this.fetchJSON<T>(this.url('api', endpoint), init);
  }

  private tracking<T>(endpoint: string, query?: URLSearchParams): Promise<T> {
    return this.fetchJSON<T>(this.url('tracking', endpoint, query));
  }

  private jobsUrl(endpoint: string): string {
    return this.url('jobs', endpoint);
  }

  private jobsRequest<T>(
    endpoint: string,
    init: RequestInit = {},
    query?: URLSearchParams
  ): Promise<T> {
    return this.fetchJSON<T>(this.url('jobs', endpoint, query), init);
  }

  private deploymentsRequest<T>(
    endpoint: string,
    init: RequestInit = {},
    query?: URLSearchParams
  ): Promise<T> {
    return this.fetchJSON<T>(this.url('deployments', endpoint, query), init);
  }

  private send(url: string, init: RequestInit = {}): Promise<Response> {
    return sendRequest(url, init, this.serverSettings);
  }

  private fetchJSON<T>(url: string, init: RequestInit = {}): Promise<T> {
    return requestJSON<T>(url, init, this.serverSettings);
  }
}

/**
 * The Jupyter server's successful response; an error reply or no reply throws
 * {@link HimaliaRequestError} with the server's message.
 */
export async function sendRequest(
  url: string,
  init: RequestInit,
  settings: ServerConnection.ISettings
): Promise<Response> {
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new HimaliaRequestError(
      `Cannot reach the Jupyter server: ${(error as Error).message}`,
      0
    );
  }
  if (!response.ok) {
    const body = parseJSON(await response.text());
    const message = hasMessage(body)
      ? body.message
      : `${response.status} ${response.statusText}`;
    throw new HimaliaRequestError(message, response.status);
  }
  return response;
}

/**
 * The Jupyter server's JSON answer; an error reply, no reply or no JSON throws
 * {@link HimaliaRequestError}.
 */
export async function requestJSON<T>(
  url: string,
  init: RequestInit,
  settings: ServerConnection.ISettings
): Promise<T> {
  const response = await sendRequest(url, init, settings);
  const body = parseJSON(await response.text());
  if (body === null || typeof body !== 'object') {
    throw new HimaliaRequestError(
      'The server sent an empty or invalid reply.',
      response.status
    );
  }
  return body as T;
}

function parseJSON(text: string): unknown {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

function hasMessage(body: unknown): body is { message: string } {
  return (
    typeof body === 'object' &&
    body !== null &&
    typeof (body as { message?: unknown }).message === 'string' &&
    (body as { message: string }).message !== ''
  );
}
