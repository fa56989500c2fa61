import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, showErrorMessage } from '@jupyterlab/apputils';
import { Toolbar, ToolbarButton } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { clustersPlugin } from './clusters/panel';
import { DashboardsClient } from './dashboards/client';
import { publishNotebook } from './dashboards/dialog';
import { dashboardsIcon, DashboardsPanel } from './dashboards/panel';
import { deployRun } from './deployments/dialog';
import { deploymentsIcon, DeploymentsPanel } from './deployments/panel';
import { FeaturesClient } from './features/client';
import { featuresIcon, FeaturesPanel } from './features/panel';
import { HimaliaClient } from './handler';
import helpPlugin from './help';
import { scheduleNotebook } from './jobs/dialog';
import { jobsIcon, JobsPanel } from './jobs/panel';
import kernelExitsPlugin from './kernelexits';
import { LabelsClient } from './labels/client';
import { labelsIcon, LabelsPanel } from './labels/panel';
import { HimaliaSidebar } from './sidebar';
import { followActiveNotebook, notebookPath } from './tracking/notebook';
import { RunsPanel } from './tracking/panel';

/**
 * Show a widget in the main area, adding it there first if needed.
 */
function openInMain(app: JupyterFrontEnd): (widget: Widget) => void {
  return widget => {
    if (!widget.isAttached) {
      app.shell.add(widget, 'main');
    }
    app.shell.activateById(widget.id);
  };
}

/**
 * Add a panel to the left sidebar, its place restored with the layout.
 */
function addToSidebar(
  app: JupyterFrontEnd,
  restorer: ILayoutRestorer | null,
  panel: Widget,
  rank: number
): void {
  app.shell.add(panel, 'left', { rank });
  if (restorer) {
    restorer.add(panel, panel.id);
  }
}

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
    addToSidebar(app, restorer, sidebar, 900);
  }
};

/**
 * The command that shows the Deployments panel; with `name`, that deployment in detail.
 */
export const OPEN_DEPLOYMENTS = 'himalia:deployments';

/**
 * The command that deploys an MLflow run's model (`runId`, `runName`): it asks for the
 * deployment's name and canary share, then shows the deployment.
 */
export const DEPLOY_RUN = 'himalia:deploy-run';

/**
 * Adds the Runs panel (MLflow runs of the active notebook, or all of the user's) to the left
 * sidebar.
 */
const runsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'himalia:runs',
  description:
    "Lists the active notebook's MLflow runs (or all of yours), plots their metrics, compares two and deploys one's model.",
  autoStart: true,
  optional: [ILayoutRestorer],
  activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null): void => {
    const panel = new RunsPanel({
      client: new HimaliaClient(app.serviceManager.serverSettings),
      deploy: run =>
        void app.commands.execute(DEPLOY_RUN, { runId: run.run_id, runName: run.name })
    });
    addToSidebar(app, restorer, panel, 910);
    followActiveNotebook(app.shell, path => panel.setNotebook(path));
  }
};

/**
 * The command that opens the Schedule dialog for a notebook: `path` (from the server's root), or
 * the file browser's selected notebook (`from: 'filebrowser'`), or the active notebook.
 */
export const SCHEDULE_NOTEBOOK = 'himalia:schedule-notebook';

/**
 * What the Schedule command needs of the file browser, read structurally so the extension does
 * not depend on @jupyterlab/filebrowser.
 */
interface IFileBrowserLike {
  selectedItems(): Iterable<{ path: string; type: string }>;
}

/**
 * What the Schedule command needs of an open document: its path and a way to save it.
 */
interface IDocumentContextLike {
  path: string;
  localPath?: string;
  model: { dirty: boolean };
  save(): Promise<void>;
}

function selectedNotebook(shell: JupyterFrontEnd.IShell): string | null {
  for (const widget of shell.widgets('left')) {
    const browser = widget as Widget & Partial<IFileBrowserLike>;
    if (widget.id === 'filebrowser' && typeof browser.selectedItems === 'function') {
      for (const item of browser.selectedItems()) {
        if (item.type === 'notebook' || item.path.endsWith('.ipynb')) {
          return item.path;
        }
      }
    }
  }
  return null;
}

/**
 * The notebook a command acts on: its `path` argument, the file browser's selected notebook
 * (`from: 'filebrowser'`), or the active notebook; null when there is none.
 */
function commandNotebook(app: JupyterFrontEnd, args: { [key: string]: unknown }): string | null {
  if (typeof args.path === 'string' && args.path.endsWith('.ipynb')) {
    return args.path;
  }
  if (args.from === 'filebrowser') {
    return selectedNotebook(app.shell);
  }
  return notebookPath(app.shell.currentWidget);
}

/**
 * Save the open notebook at `path` when it has unsaved changes: the job runs it as saved.
 */
async function saveIfOpen(shell: JupyterFrontEnd.IShell, path: string): Promise<void> {
  for (const widget of shell.widgets('main')) {
    const context = (widget as Widget & { context?: IDocumentContextLike }).context;
    if (
      context &&
      (context.localPath || context.path) === path &&
      context.model?.dirty &&
      typeof context.save === 'function'
    ) {
      await context.save();
    }
  }
}

/**
 * Adds the Jobs panel (scheduled notebook jobs and their runs) to the left sidebar, and the
 * "Schedule…" command to the file browser's and the notebook's context menus, the notebook
 * toolbar and the command palette.
 */
const jobsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'himalia:jobs',
  description:
    'Schedules notebooks as jobs and follows their runs: progress, outputs, logs, reruns.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null
  ): void => {
    const client = new HimaliaClient(app.serviceManager.serverSettings);
    const panel = new JobsPanel({
      client,
      open: openInMain(app)
    });
    addToSidebar(app, restorer, panel, 920);

    const pathFor = (args: { [key: string]: unknown }) => commandNotebook(app, args);

    app.commands.addCommand(SCHEDULE_NOTEBOOK, {
      label: 'Schedule…',
      caption: 'Run this notebook as a job: once now, or on a schedule',
      icon: jobsIcon,
      isEnabled: args => pathFor(args) !== null,
      execute: async args => {
        const path = pathFor(args);
        if (path === null) {
          return;
        }
        try {
          await saveIfOpen(app.shell, path);
        } catch (error) {
          await showErrorMessage('Cannot save the notebook', error as Error);
          return;
        }
        const scheduled = await scheduleNotebook({ client, path });
        if (scheduled === null) {
          return;
        }
        app.shell.activateById(panel.id);
        await panel.reveal(scheduled.job.id);
        if (scheduled.runError) {
          await showErrorMessage(
            `Job “${scheduled.job.name}” was made, but its run did not start`,
            scheduled.runError
          );
        }
      }
    });

    app.contextMenu.addItem({
      command: SCHEDULE_NOTEBOOK,
      selector: '.jp-DirListing-item[data-file-type="notebook"]',
      args: { from: 'filebrowser' },
      rank: 3
    });
    app.contextMenu.addItem({
      command: SCHEDULE_NOTEBOOK,
      selector: '.jp-Notebook',
      rank: 90
    });
    if (palette) {
      palette.addItem({ command: SCHEDULE_NOTEBOOK, category: 'himalia' });
    }
    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (
        widget: Widget & { toolbar?: Toolbar },
        context: { path: string; localPath?: string }
      ) => {
        const button = new ToolbarButton({
          icon: jobsIcon,
          tooltip: 'Schedule this notebook as a job',
          onClick: () =>
            void app.commands.execute(SCHEDULE_NOTEBOOK, {
              path: context.localPath || context.path
            })
        });
        if (!widget.toolbar?.insertAfter('cellType', 'himalia-schedule', button)) {
          widget.toolbar?.addItem('himalia-schedule', button);
        }
        return button;
      }
    });
  }
};

/**
 * Adds the Deployments panel (model deployments: versions, traffic, keys) to the left sidebar,
 * with the commands that open it and that deploy a run's model (the Runs panel's "Deploy…").
 */
const deploymentsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'himalia:deployments',
  description:
    'Deploys MLflow models and follows their versions: traffic split, latency, logs, promotion, rollback, API keys.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null
  ): void => {
    const client = new HimaliaClient(app.serviceManager.serverSettings);
    const panel = new DeploymentsPanel({
      client,
      open: openInMain(app)
    });
    addToSidebar(app, restorer, panel, 930);

    app.commands.addCommand(OPEN_DEPLOYMENTS, {
      label: 'Deployments',
      caption: 'Your model deployments: versions, traffic, latency, API keys',
      icon: deploymentsIcon,
      execute: async args => {
        app.shell.activateById(panel.id);
        if (typeof args.name === 'string') {
          await panel.reveal(args.name);
        }
      }
    });
    app.commands.addCommand(DEPLOY_RUN, {
      label: 'Deploy…',
      caption: "Serve a run's model as a deployment, or as a new version of one",
      icon: deploymentsIcon,
      isEnabled: args => typeof args.runId === 'string',
      execute: async args => {
        if (typeof args.runId !== 'string') {
          return;
        }
        const runName = typeof args.runName === 'string' ? args.runName : args.runId;
        const deployed = await deployRun(client, { runId: args.runId, runName });
        if (deployed) {
          await app.commands.execute(OPEN_DEPLOYMENTS, { name: deployed.deployment.name });
        }
      }
    });
    if (palette) {
      palette.addItem({ command: OPEN_DEPLOYMENTS, category: 'himalia' });
    }
  }
};

/**
 * The command that shows the Features panel; with `name`, that feature view in detail.
 */
export const OPEN_FEATURES = 'himalia:features';

/**
 * Adds the Features panel (the feature catalog: views, entities, statistics, freshness) to the
 * left sidebar, with the command that opens it.
 */
const featuresPlugin: JupyterFrontEndPlugin<void> = {
  id: 'himalia:features',
  description:
    'Browses the feature catalog: feature views and entities, statistics and histograms, freshness, materializations.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null
  ): void => {
    const panel = new FeaturesPanel({
      client: new FeaturesClient(app.serviceManager.serverSettings)
    });
    addToSidebar(app, restorer, panel, 940);

    app.commands.addCommand(OPEN_FEATURES, {
      label: 'Features',
      caption: 'The feature catalog: views, entities, statistics, freshness',
      icon: featuresIcon,
      execute: async args => {
        app.shell.activateById(panel.id);
        if (typeof args.name === 'string') {
          await panel.reveal(args.name);
        }
      }
    });
    if (palette) {
      palette.addItem({ command: OPEN_FEATURES, category: 'himalia' });
    }
  }
};

/**
 * The command that shows the Labels panel; with `id`, that label set in detail.
 */
export const OPEN_LABELS = 'himalia:labels';

/**
 * Adds the Labels panel (label sets: progress, annotators, agreement, conflicts) to the left
 * sidebar, with the command that opens it.
 */
const labelsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'himalia:labels',
  description:
    'Follows label sets: progress per set and annotator, agreement, conflicts to adjudicate, snapshots.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null
  ): void => {
    const himalia = new HimaliaClient(app.serviceManager.serverSettings);
    const panel = new LabelsPanel({
      client: new LabelsClient(app.serviceManager.serverSettings),
      whoami: async () => (await himalia.status()).whoami
    });
    addToSidebar(app, restorer, panel, 950);

    app.commands.addCommand(OPEN_LABELS, {
      label: 'Labels',
      caption: 'Your label sets: progress, annotators, agreement, conflicts',
      icon: labelsIcon,
      execute: async args => {
        app.shell.activateById(panel.id);
        if (typeof args.id === 'number') {
          await panel.reveal(args.id);
        }
      }
    });
    if (palette) {
      palette.addItem({ command: OPEN_LABELS, category: 'himalia' });
    }
  }
};

/**
 * The command that shows the Dashboards panel; with `name`, that dashboard's row.
 */
export const OPEN_DASHBOARDS = 'himalia:dashboards';

/**
 * The command that opens the "Publish as dashboard" dialog for a notebook: `path`, the file
 * browser's selected notebook (`from: 'filebrowser'`), or the active notebook.
 */
export const PUBLISH_DASHBOARD = 'himalia:publish-dashboard';

/**
 * Adds the Dashboards panel (the user's dashboards and those shared with them) to the left
 * sidebar, and "Publish as dashboard…" to the file browser's and the notebook's context menus
 * and the command palette.
 */
const dashboardsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'himalia:dashboards',
  description:
    'Publishes notebooks as Voilà dashboards for viewers, and lists, shares and unpublishes them.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null
  ): void => {
    const himalia = new HimaliaClient(app.serviceManager.serverSettings);
    const client = new DashboardsClient(app.serviceManager.serverSettings);
    const panel = new DashboardsPanel({
      client,
      whoami: async () => (await himalia.status()).whoami
    });
    addToSidebar(app, restorer, panel, 960);

    const pathFor = (args: { [key: string]: unknown }) => commandNotebook(app, args);

    app.commands.addCommand(OPEN_DASHBOARDS, {
      label: 'Dashboards',
      caption: 'Your dashboards and those shared with you',
      icon: dashboardsIcon,
      execute: async args => {
        app.shell.activateById(panel.id);
        if (typeof args.name === 'string') {
          await panel.reveal(args.name);
        }
      }
    });
    app.commands.addCommand(PUBLISH_DASHBOARD, {
      label: 'Publish as dashboard…',
      caption: 'Publish this notebook for viewers: its outputs and widgets, not its code',
      icon: dashboardsIcon,
      isEnabled: args => pathFor(args) !== null,
      execute: async args => {
        const path = pathFor(args);
        if (path === null) {
          return;
        }
        try {
          await saveIfOpen(app.shell, path);
        } catch (error) {
          await showErrorMessage('Cannot save the notebook', error as Error);
          return;
        }
        const published = await publishNotebook({ client, jobs: himalia, path });
        if (published) {
          await app.commands.execute(OPEN_DASHBOARDS, { name: published.name });
        }
      }
    });

    app.contextMenu.addItem({
      command: PUBLISH_DASHBOARD,
      selector: '.jp-DirListing-item[data-file-type="notebook"]',
      args: { from: 'filebrowser' },
      rank: 4
    });
    app.contextMenu.addItem({
      command: PUBLISH_DASHBOARD,
      selector: '.jp-Notebook',
      rank: 91
    });
    if (palette) {
      palette.addItem({ command: PUBLISH_DASHBOARD, category: 'himalia' });
      palette.addItem({ command: OPEN_DASHBOARDS, category: 'himalia' });
    }
  }
};

export default [
  sidebarPlugin,
  runsPlugin,
  jobsPlugin,
  deploymentsPlugin,
  featuresPlugin,
  labelsPlugin,
  dashboardsPlugin,
  clustersPlugin,
  helpPlugin,
  kernelExitsPlugin
];
