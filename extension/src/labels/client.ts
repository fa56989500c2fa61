import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { requestJSON } from '../handler';

/**
 * A label: one class of a single-label set, the classes given of a multi-label one.
 */
export type Label = string | string[];

/**
 * How far a label set is. `done`: items with their k labels; `mine`: the caller's labels;
 * `remaining_for_me`: items the caller could still be given.
 */
export interface ILabelProgress {
  items: number;
  done: number;
  labels: number;
  /** Labels given, by person. */
  annotators: { [user: string]: number };
  mine: number;
  remaining_for_me: number;
}

/**
 * A label set: what to label, the classes, how many people label each item (`k`), who may.
 */
export interface ILabelSet {
  id: number;
  name: string;
  owner: string;
  task: 'single' | 'multi';
  classes: string[];
  instructions: string;
  k: number;
  shared_users: string[];
  shared_groups: string[];
  /** How the queue is ordered: empty (as added) or an active learning strategy. */
  strategy: string;
  /** Where the queue's uncertainty scores came from. */
  model: string;
  created_at: string | null;
  progress: ILabelProgress;
}

/**
 * How much annotators agree beyond chance: Cohen's kappa for two people, Fleiss' for more;
 * `method` and `kappa` are null until items have labels from two people.
 */
export interface IAgreement {
  method: 'cohen' | 'fleiss' | null;
  kappa: number | null;
  per_class: { [cls: string]: number | null };
  /** Labels given to the same item: `matrix[i][j]` counts `classes[i]` against `classes[j]`. */
  confusion: { classes: string[]; matrix: number[][] };
  /** The items compared. */
  items: number;
  annotators: string[];
  /** A multi-label set's kappa is the mean of its classes'. */
  task: 'single' | 'multi';
}

/**
 * An item whose labels disagree: each person's label, and the owner's decision once made.
 */
export interface IConflict {
  item_id: string;
  votes: { [user: string]: Label };
  adjudicated: Label | null;
  adjudicated_by: string | null;
}

/**
 * A frozen, numbered copy of a set's labels; equal labels give equal `sha256`.
 */
export interface ILabelSnapshot {
  labelset: string;
  labelset_id: number;
  version: number;
  sha256: string;
  /** Items with a label. */
  items: number;
  annotations: number;
  agreement: Partial<IAgreement>;
  created_by: string;
  created_at: string;
}

/**
 * Typed client of the platform's label sets, through the server extension's pass-through
 * (`<base>/himalia/labels/api/<path>` is the platform's `/api/v1/labelsets/<path>`).
 */
export class LabelsClient {
  /**
   * @param serverSettings - connection settings of the Jupyter server.
   */
  constructor(readonly serverSettings: ServerConnection.ISettings) {}

  /**
   * The caller's label sets and those shared with them.
   *
   * @throws {HimaliaRequestError} 403 for someone with no labeling role, 503 when the platform
   * API cannot be reached.
   */
  async labelSets(): Promise<ILabelSet[]> {
    return (await this._request<{ labelsets: ILabelSet[] }>('')).labelsets;
  }

  /**
   * How much the annotators of a set agree (its owner, an administrator).
   */
  agreement(id: number): Promise<IAgreement> {
    return this._request<IAgreement>(`${id}/agreement`);
  }

  /**
   * The items of a set whose labels disagree (its owner, an administrator).
   */
  async conflicts(id: number): Promise<IConflict[]> {
    return (await this._request<{ conflicts: IConflict[] }>(`${id}/conflicts`)).conflicts;
  }

  /**
   * Decide an item's label where its annotators disagree (the set's owner, an administrator).
   *
   * @throws {HimaliaRequestError} 403 for anyone else, 400 for a class the set does not have.
   */
  async adjudicate(id: number, itemId: string, label: Label): Promise<void> {
    await this._request(`${id}/items/${encodeURIComponent(itemId)}/adjudicate`, {
      method: 'POST',
      // Passed through as is: the platform reads a body as JSON only when it says it is.
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ label })
    });
  }

  /**
   * Freeze the set's labels as its next numbered snapshot; the latest one when they have not
   * changed since (its owner, an administrator).
   */
  snapshot(id: number): Promise<ILabelSnapshot> {
    return this._request<ILabelSnapshot>(`${id}/snapshots`, { method: 'POST' });
  }

  /**
   * The set's snapshots, oldest first.
   */
  async snapshots(id: number): Promise<ILabelSnapshot[]> {
    return (await this._request<{ snapshots: ILabelSnapshot[] }>(`${id}/snapshots`)).snapshots;
  }

  /**
   * The server's JSON answer; an error reply, no reply or no JSON throws with its message.
   */
  private async _request<T>(endpoint: string, init: RequestInit = {}): Promise<T> {
    // Item ids come encoded: the path is appended, not joined, so none is decoded again.
    const url =
      URLExt.join(this.serverSettings.baseUrl, 'himalia', 'labels', 'api') + '/' + endpoint;
    return requestJSON<T>(url, init, this.serverSettings);
  }
}
