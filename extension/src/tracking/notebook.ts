import { JupyterFrontEnd } from '@jupyterlab/application';
import type { ISignal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

/**
 * What the Runs panel needs of a document widget: its context's path. Read structurally, so
 * the extension does not depend on @jupyterlab/notebook or @jupyterlab/docregistry.
 */
interface IDocumentLike {
  context: {
    path: string;
    /** The path without a drive prefix (`RTC:`), as kernels see it. */
    localPath?: string;
    pathChanged: ISignal<unknown, string>;
  };
}

function isDocument(widget: Widget | null): widget is Widget & IDocumentLike {
  const context = (widget as Partial<IDocumentLike> | null)?.context;
  return (
    typeof context === 'object' &&
    context !== null &&
    typeof context.path === 'string' &&
    typeof context.pathChanged?.connect === 'function'
  );
}

/**
 * The path, from the server's root, of the notebook a main-area widget shows; null when it is
 * not a notebook. It is what `himalia.notebook` tags hold.
 */
export function notebookPath(widget: Widget | null): string | null {
  if (!isDocument(widget)) {
    return null;
  }
  const path = widget.context.localPath || widget.context.path;
  return path.endsWith('.ipynb') ? path : null;
}

/**
 * Call `onChange` with the path of the notebook last active in the main area: when another
 * notebook becomes current, when it is renamed, and with null when it is closed. Other
 * widgets (a text file, a terminal) leave the last notebook in place.
 */
export function followActiveNotebook(
  shell: JupyterFrontEnd.IShell,
  onChange: (path: string | null) => void
): void {
  let followed: (Widget & IDocumentLike) | null = null;
  const renamed = (): void => onChange(followed ? notebookPath(followed) : null);
  const closed = (): void => {
    follow(null);
    onChange(null);
  };
  const follow = (widget: (Widget & IDocumentLike) | null): void => {
    if (followed) {
      followed.context.pathChanged.disconnect(renamed);
      followed.disposed.disconnect(closed);
    }
    followed = widget;
    if (followed) {
      followed.context.pathChanged.connect(renamed);
      followed.disposed.connect(closed);
    }
  };
  const update = (widget: Widget | null): void => {
    if (widget !== followed && notebookPath(widget) !== null) {
      follow(widget as Widget & IDocumentLike);
      onChange(notebookPath(widget));
    }
  };
  update(shell.currentWidget);
  shell.currentChanged?.connect((_, change) => update(change.newValue));
}
