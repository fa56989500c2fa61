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

  private request<T>(endpoint: string, init: RequestInit = {}): Promise<T> {
    return this.fetchJSON<T>(
      URLExt.join(this.serverSettings.baseUrl, 'himalia', 'api', endpoint),
      init
    );
  }

  private tracking<T>(endpoint: string, query?: URLSearchParams): Promise<T> {
    const url = URLExt.join(
      this.serverSettings.baseUrl,
      'himalia',
      'tracking',
      endpoint
    );
    // The query is added after joining: a path join must not touch its encoded characters.
    return this.fetchJSON<T>(query ? `${url}?${query.toString()}` : url);
  }

  private async fetchJSON<T>(url: string, init: RequestInit = {}): Promise<T> {
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(
        url,
        init,
        this.serverSettings
      );
    } catch (error) {
      throw new HimaliaRequestError(
        `Cannot reach the Jupyter server: ${(error as Error).message}`,
        0
      );
    }
    const body = parseJSON(await response.text());
    if (!response.ok) {
      const message = hasMessage(body)
        ? body.message
        : `${response.status} ${response.statusText}`;
      throw new HimaliaRequestError(message, response.status);
    }
    if (body === null) {
      throw new HimaliaRequestError(
        'The server sent an empty or invalid reply.',
        response.status
      );
    }
    return body as T;
  }
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
