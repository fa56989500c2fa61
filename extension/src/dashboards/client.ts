import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { requestJSON, sendRequest } from '../handler';

/**
 * What a dashboard name may be (the platform API's rule): a lowercase letter or digit, then up
 * to 62 lowercase letters, digits and `-`.
 */
export const DASHBOARD_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

/**
 * Who may open a dashboard besides its owner: people, hub groups, and (`viewers`) everyone
 * with the viewer role.
 */
export interface IDashboardShare {
  users: string[];
  groups: string[];
  viewers: boolean;
}

/**
 * When the data a dashboard shows was made: its linked job's last successful run.
 */
export interface IDashboardFreshness {
  run_id: number;
  /** ISO 8601, UTC. */
  finished_at: string;
}

/**
 * A published notebook, rendered by Voilà for the people it is shared with.
 */
export interface IDashboard {
  id: number;
  name: string;
  title: string;
  description: string;
  owner: string;
  job_id: number | null;
  job_name: string | null;
  share: IDashboardShare;
  /** 1, then one more each time its owner publishes it again. */
  version: number;
  views: number;
  /** Where it opens: `<hub>/services/dashboards/<name>/`. */
  url: string;
  thumbnail_url: string | null;
  /** Null without a linked job or before its first successful run. */
  freshness: IDashboardFreshness | null;
  created: string;
  updated: string;
}

/**
 * A notebook on this server to publish (`POST <base>/himalia/dashboards`), as last saved.
 */
export interface INewDashboard {
  /** The notebook's path from the server's root. */
  path: string;
  name: string;
  title?: string;
  description?: string;
  /** The job (id) whose latest outputs it shows. */
  job_id?: number;
  share?: IDashboardShare;
}

/**
 * What {@link DashboardsClient.update} may change; `job_id: null` unlinks the job.
 */
export interface IDashboardChanges {
  title?: string;
  description?: string;
  job_id?: number | null;
  share?: IDashboardShare;
}

/**
 * One publication of a dashboard.
 */
export interface IDashboardVersion {
  version: number;
  sha256: string;
  created: string;
}

/**
 * Typed client of the server extension's dashboards routes (`<base>/himalia/dashboards`),
 * which call the platform API with the server's token.
 */
export class DashboardsClient {
  constructor(serverSettings?: ServerConnection.ISettings) {
    this.serverSettings = serverSettings ?? ServerConnection.makeSettings();
  }

  readonly serverSettings: ServerConnection.ISettings;

  /**
   * The user's dashboards and those shared with them.
   *
   * @throws {HimaliaRequestError} 503 when the platform API cannot be reached.
   */
  async dashboards(): Promise<IDashboard[]> {
    return (await this._request<{ dashboards: IDashboard[] }>('')).dashboards;
  }

  /**
   * Publish a notebook: a new dashboard, or the next version of one of the user's.
   *
   * @throws {HimaliaRequestError} 422 naming the bad field, 409 for another person's name.
   */
  publish(dashboard: INewDashboard): Promise<IDashboard> {
    return this._request<IDashboard>('', {
      method: 'POST',
      body: JSON.stringify(dashboard)
    });
  }

  /**
   * Change a dashboard's title, description, linked job or sharing.
   */
  update(name: string, changes: IDashboardChanges): Promise<IDashboard> {
    return this._request<IDashboard>(encodeURIComponent(name), {
      method: 'PATCH',
      body: JSON.stringify(changes)
    });
  }

  /**
   * Stop serving a dashboard: its link no longer opens.
   */
  async unpublish(name: string): Promise<void> {
    await sendRequest(
      this._url(encodeURIComponent(name)),
      { method: 'DELETE' },
      this.serverSettings
    );
  }

  /**
   * A dashboard's publications, newest first.
   */
  async versions(name: string): Promise<IDashboardVersion[]> {
    const reply = await this._request<{ versions: IDashboardVersion[] }>(
      `${encodeURIComponent(name)}/versions`
    );
    return reply.versions;
  }

  private _url(endpoint: string): string {
    return URLExt.join(this.serverSettings.baseUrl, 'himalia', 'dashboards', endpoint);
  }

  private _request<T>(endpoint: string, init: RequestInit = {}): Promise<T> {
    return requestJSON<T>(this._url(endpoint), init, this.serverSettings);
  }
}
