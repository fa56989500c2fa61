import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { requestJSON } from '../handler';

/**
 * One of the person's Dask clusters, as the server extension lists it.
 */
export interface ICluster {
  name: string;
  /** `pending` while it starts, then `running`. */
  status: string;
  /** ISO 8601, or null before it started. */
  started: string | null;
  profile: string;
  /** The workers asked for when it started (0 for adaptive clusters). */
  workers: number;
  /** Path of its dashboard on the hub's origin; only its owner may open it. */
  dashboard: string;
}

/**
 * Typed client of the server extension's `/himalia/clusters` route.
 */
export class ClustersClient {
  /**
   * @param serverSettings - connection settings of the Jupyter server.
   */
  constructor(readonly serverSettings: ServerConnection.ISettings) {}

  /**
   * The person's running and starting clusters, newest first.
   *
   * @throws {HimaliaRequestError} 503 when the Dask gateway cannot be reached.
   */
  async clusters(): Promise<ICluster[]> {
    const url = URLExt.join(this.serverSettings.baseUrl, 'himalia', 'clusters');
    const answer = await requestJSON<{ clusters: ICluster[] }>(url, {}, this.serverSettings);
    return answer.clusters;
  }
}
