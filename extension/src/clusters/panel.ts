import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { PageConfig } from '@jupyterlab/coreutils';
import { LabIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { element, panelHeader, reconcile } from '../dom';
import { formatWhen } from '../jobs/panel';
import { ClustersClient, ICluster } from './client';

/**
 * Three linked nodes: a cluster of workers.
 */
const DASK_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <path class="jp-icon3" fill="#616161" d="M12 2a3 3 0 0 1 1 5.83V10h4.17A3 3 0 1 1 17 12h-4v4.17a3 3 0 1 1-2 0V12H7a3 3 0 1 1 .17-2H11V7.83A3 3 0 0 1 12 2z"/>
</svg>`;

/**
 * The Dask panel's sidebar icon.
 */
export const daskIcon = new LabIcon({ name: 'himalia:dask', svgstr: DASK_SVG });

/**
 * How often the panel asks again while it is shown, in ms: clusters start and stop from
 * notebooks, jobs and idleness, not from the panel.
 */
export const CLUSTERS_POLL = 10000;

/**
 * What the panel keeps of one cluster's row.
 */
interface IClusterRow {
  node: HTMLLIElement;
  name: HTMLElement;
  status: HTMLElement;
  facts: HTMLElement;
  dashboard: HTMLAnchorElement;
}

/**
 * Sidebar panel: the person's Dask clusters (from any of their kernels or job runs), each
 * with its state, when it started, its profile and workers, and a link to its dashboard
 * through the hub.
 */
export class ClustersPanel extends Widget {
  constructor(options: { client: ClustersClient }) {
    super();
    this._client = options.client;
    this.id = 'himalia-clusters';
    this.addClass('jp-himalia-clusters');
    this.title.icon = daskIcon;
    this.title.caption = 'Dask';

    const { header } = panelHeader('Dask', () => void this.refresh());
    this._state = element('div', 'jp-himalia-state');
    this._state.setAttribute('role', 'status');
    this._list = element('ul', 'jp-himalia-deployment-list jp-himalia-cluster-list');
    this._list.setAttribute('aria-label', 'Dask clusters');
    this.node.append(header, this._state, this._list);
  }

  /**
   * Ask for the clusters again; a failure is shown in the panel.
   */
  async refresh(): Promise<void> {
    const request = ++this._requests;
    if (this._rows.size === 0) {
      this._showState('Loading…', false);
    }
    try {
      const clusters = await this._client.clusters();
      if (request === this._requests && !this.isDisposed) {
        this._show(clusters);
      }
    } catch (error) {
      if (request === this._requests && !this.isDisposed) {
        this._showState((error as Error).message, true);
      }
    }
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.refresh();
    window.clearInterval(this._timer);
    this._timer = window.setInterval(() => void this.refresh(), CLUSTERS_POLL);
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    window.clearInterval(this._timer);
  }

  dispose(): void {
    window.clearInterval(this._timer);
    super.dispose();
  }

  private _showState(text: string, isError: boolean): void {
    this._state.textContent = text;
    this._state.classList.toggle('jp-himalia-error', isError);
    this._state.hidden = text === '';
  }

  private _show(clusters: ICluster[]): void {
    reconcile(this._list, clusters, this._rows, {
      key: cluster => cluster.name,
      make: cluster => this._makeRow(cluster),
      update: (row, cluster) => this._updateRow(row, cluster)
    });
    this._showState(
      clusters.length === 0
        ? 'No Dask clusters. Start one in a notebook: client = %cluster start --workers 2'
        : '',
      false
    );
  }

  private _makeRow(cluster: ICluster): IClusterRow {
    const node = element('li', 'jp-himalia-deployment jp-himalia-cluster');
    node.dataset.name = cluster.name;
    const top = element('div', 'jp-himalia-deployment-top');
    const name = element('span', 'jp-himalia-deployment-name jp-himalia-cluster-name');
    const status = element('span', 'jp-himalia-cluster-status');
    top.append(name, status);
    const facts = element('div', 'jp-himalia-deployment-facts jp-himalia-cluster-facts');
    const dashboard = element('a', 'jp-himalia-cluster-dashboard', 'Dashboard');
    dashboard.target = '_blank';
    dashboard.rel = 'noopener';
    node.append(top, facts, dashboard);
    return { node, name, status, facts, dashboard };
  }

  private _updateRow(row: IClusterRow, cluster: ICluster): void {
    row.name.textContent = cluster.name;
    row.status.textContent = cluster.status;
    row.status.classList.toggle('jp-himalia-ok', cluster.status === 'running');
    const facts = [
      cluster.started ? `started ${formatWhen(cluster.started)}` : 'starting',
      cluster.profile ? `profile ${cluster.profile}` : '',
      cluster.workers
        ? `${cluster.workers} ${cluster.workers === 1 ? 'worker' : 'workers'}`
        : 'adaptive'
    ];
    row.facts.textContent = facts.filter(Boolean).join(' · ');
    // The hub serves the dashboard: on the hub's host when Lab is served from another one.
    row.dashboard.href = PageConfig.getOption('hubHost') + cluster.dashboard;
    row.dashboard.title = `The dashboard of ${cluster.name}, in a new tab`;
    row.node.dataset.status = cluster.status;
  }

  private _client: ClustersClient;
  private _state: HTMLDivElement;
  private _list: HTMLUListElement;
  private _rows = new Map<string, IClusterRow>();
  private _requests = 0;
  private _timer = 0;
}

/**
 * Adds the Dask panel (the person's clusters and their dashboards) to the left sidebar.
 */
export const clustersPlugin: JupyterFrontEndPlugin<void> = {
  id: 'himalia:clusters',
  description: "Lists the person's Dask clusters with links to their dashboards.",
  autoStart: true,
  optional: [ILayoutRestorer],
  activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null): void => {
    const panel = new ClustersPanel({
      client: new ClustersClient(app.serviceManager.serverSettings)
    });
    app.shell.add(panel, 'left', { rank: 970 });
    if (restorer) {
      restorer.add(panel, panel.id);
    }
  }
};
