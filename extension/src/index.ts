import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, showErrorMessage } from '@jupyterlab/apputils';
import { Toolbar, ToolbarButton } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { HimaliaClient } from './handler';
import helpPlugin from './help';
import { scheduleNotebook } from './jobs/dialog';
import { jobsIcon, JobsPanel } from './jobs/panel';
import kernelExitsPlugin from './kernelexits';
import { HimaliaSidebar } from './sidebar';
import { followActiveNotebook, notebookPath } from './tracking/notebook';
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
      open: widget => {
        if (!widget.isAttached) {
          app.shell.add(widget, 'main');
        }
        app.shell.activateById(widget.id);
      }
    });
    app.shell.add(panel, 'left', { rank: 920 });
    if (restorer) {
      restorer.add(panel, panel.id);
    }

    const pathFor = (args: { [key: string]: unknown }): string | null => {
      if (typeof args.path === 'string' && args.path.endsWith('.ipynb')) {
        return args.path;
      }
      if (args.from === 'filebrowser') {
        return selectedNotebook(app.shell);
      }
      return notebookPath(app.shell.currentWidget);
    };

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

export default [sidebarPlugin, runsPlugin, jobsPlugin, helpPlugin, kernelExitsPlugin];
