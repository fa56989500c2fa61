import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';

import { HimaliaClient } from './handler';
import helpPlugin from './help';
import { HimaliaSidebar } from './sidebar';

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

export default [sidebarPlugin, helpPlugin];
