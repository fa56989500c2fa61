import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { requestJSON } from '../handler';

/**
 * A join key or a feature: its name and Feast value type (`INT64`, `DOUBLE`, `STRING`, ...).
 */
export interface IFeatureColumn {
  name: string;
  dtype: string;
  description?: string;
}

/**
 * Where a view's rows are read from: a Parquet file (or folder) of its owner's.
 */
export interface IFeatureSource {
  path: string;
  timestamp_field: string;
  created_timestamp_column: string;
  /** Column in the file -> feature name. */
  field_mapping: { [column: string]: string };
}

/**
 * A materialization is `running`, then `succeeded` or `failed`.
 */
export type MaterializationState = 'running' | 'succeeded' | 'failed';

/**
 * One load of a view's latest values into the online store. Times are ISO 8601 strings.
 */
export interface IMaterialization {
  id: number;
  view: string;
  owner: string;
  /** The event times it covered. */
  start: string | null;
  end: string | null;
  rows: number;
  state: MaterializationState;
  /** Why it failed; empty otherwise. */
  message: string;
  /** The platform job run that did it, if one did. */
  job_run_id: string | null;
  started_at: string | null;
  ended_at: string | null;
}

/**
 * How fresh a view is: its newest event, and up to when its online values were loaded.
 */
export interface IFreshness {
  latest_event: string | null;
  materialized_through: string | null;
  last_materialization: IMaterialization | null;
}

/**
 * A feature view as the catalog lists it.
 */
export interface IFeatureView {
  name: string;
  owner: string;
  description: string;
  tags: { [key: string]: string };
  entities: string[];
  join_keys: IFeatureColumn[];
  features: IFeatureColumn[];
  /** 0: values never expire. */
  ttl_seconds: number;
  online: boolean;
  source: IFeatureSource;
  created_at: string | null;
  updated_at: string | null;
  /** Null until its owner's kernel has read its data once. */
  rows: number | null;
  entity_count: number | null;
  freshness: IFreshness;
  /** A short hash of its definition. */
  hash: string;
}

/**
 * What one feature's values look like. Numbers have everything; other types only the counts.
 */
export interface IFeatureStatistics {
  count: number;
  nulls: number;
  distinct: number;
  mean?: number | null;
  std?: number | null;
  min?: number | null;
  max?: number | null;
  /** Equal bins: `edges` has one more entry than `counts`. */
  histogram?: { edges: number[]; counts: number[] };
}

/**
 * A feature view in detail (`GET <base>/himalia/features/views/<name>`).
 */
export interface IFeatureViewDetail extends IFeatureView {
  /** By feature name. */
  statistics: { [feature: string]: IFeatureStatistics };
  statistics_at: string | null;
  /** Newest first. */
  materializations: IMaterialization[];
  versions: { version: number; created_at: string | null }[];
}

/**
 * An entity: what feature values are about, found by its join keys.
 */
export interface IFeatureEntity {
  name: string;
  join_keys: string[];
  value_type: string;
  description: string;
  owner: string;
  tags: { [key: string]: string };
}

/**
 * The feature catalog (`GET <base>/himalia/features?q=`).
 */
export interface IFeatureCatalog {
  views: IFeatureView[];
  entities: IFeatureEntity[];
  registry_version: string;
}

/**
 * Typed client of the server extension's `/himalia/features` routes.
 */
export class FeaturesClient {
  /**
   * @param serverSettings - connection settings of the Jupyter server.
   */
  constructor(readonly serverSettings: ServerConnection.ISettings) {}

  /**
   * The feature views and entities; with `words`, those matching every word, best first.
   *
   * @throws {HimaliaRequestError} 403 for someone who is not a scientist, 503 when the platform
   * API cannot be reached.
   */
  catalog(words = ''): Promise<IFeatureCatalog> {
    const query = words ? new URLSearchParams({ q: words }) : undefined;
    return this._get<IFeatureCatalog>('', query);
  }

  /**
   * One view with its statistics, freshness, materializations and versions.
   *
   * @throws {HimaliaRequestError} 404 for a view that is not in the catalog.
   */
  view(name: string): Promise<IFeatureViewDetail> {
    return this._get<IFeatureViewDetail>(`views/${encodeURIComponent(name)}`);
  }

  /**
   * The server's JSON answer; an error reply, no reply or no JSON throws with its message.
   */
  private async _get<T>(endpoint: string, query?: URLSearchParams): Promise<T> {
    const path = URLExt.join(this.serverSettings.baseUrl, 'himalia', 'features', endpoint);
    const url = query ? `${path}?${query.toString()}` : path;
    return requestJSON<T>(url, {}, this.serverSettings);
  }
}
