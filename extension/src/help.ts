import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { IMainMenu } from '@jupyterlab/mainmenu';

/**
 * The command that opens the platform's documentation.
 */
export const OPEN_DOCS = 'himalia:open-docs';

/**
 * Where the platform API serves the documentation, from the hub prefix of this server
 * (`/hub/` -> `/services/himalia/guide/`); null when JupyterLab does not run under a hub.
 */
export function docsUrl(hubPrefix: string, origin: string): string | null {
  if (!hubPrefix) {
    return null;
  }
  const base = hubPrefix.replace(/hub\/?$/, '');
  return URLExt.join(origin, base, 'services/himalia/guide/');
}

/**
 * Adds "himalia documentation" to the Help menu.
 */
const helpPlugin: JupyterFrontEndPlugin<void> = {
  id: 'himalia:help',
  description: 'Opens the himalia documentation from the Help menu.',
  autoStart: true,
  optional: [IMainMenu],
  activate: (app: JupyterFrontEnd, mainMenu: IMainMenu | null): void => {
    const url = docsUrl(PageConfig.getOption('hubPrefix'), window.location.origin);
    app.commands.addCommand(OPEN_DOCS, {
      label: 'himalia documentation',
      caption: 'The platform guide: quickstart, your environment, magics, administration',
      isVisible: () => url !== null,
      execute: () => {
        if (url) {
          window.open(url, '_blank', 'noopener');
        }
      }
    });
    if (mainMenu) {
      mainMenu.helpMenu.addGroup([{ command: OPEN_DOCS }], 0);
    }
  }
};

export default helpPlugin;
