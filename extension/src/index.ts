import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';

import { HimaliaClient } from './handler';
import helpPlugin from './help';
import kernelExitsPlugin from './kernelexits';
import { HimaliaSidebar } from './sidebar';
import { followActiveNotebook } from './tracking/notebook';
import { RunsPanel } from './tracking/panel';

/**
 * Adds the himalia panel (identity, roles, platform health) to the left sidebar.
 */
const sidebarPlugin: JupyterFrontEndPlugin<void> = {
  id: 'himalia:sidebar',
  description:
    'Shows the himalia user, their roles and the platform health in the left sidebar.',
  autoStart: true,
  optional: [ILayoutRestorer],
  activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null): void => {
    const sidebar = new HimaliaSidebar({
      client: new HimaliaClient(app.serviceManager.serverSettings)
    });
    app.shell.add(sidebar, 'left', { rank: 900 });
    if (restorer) {
      restorer.add(sidebar, sidebar.id);
    }
  }
};

/**
 * Adds the Runs panel (MLflow runs of the active notebook, or all of the user's) to the left
 * sidebar.
 */
const runsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'himalia:runs',
  description:
    "Lists the active notebook's MLflow runs (or all of yours), plots their metrics and compares two.",
  autoStart: true,
  optional: [ILayoutRestorer],
  activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null): void => {
    const panel = new RunsPanel({
      client: new HimaliaClient(app.serviceManager.serverSettings)
    });
    app.shell.add(panel, 'left', { rank: 910 });
    if (restorer) {
      restorer.add(panel, panel.id);
    }
    followActiveNotebook(app.shell, path => panel.setNotebook(path));
  }
};

export default [sidebarPlugin, runsPlugin, helpPlugin, kernelExitsPlugin];
