import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import { Event } from '@jupyterlab/services';

/** The server extension's event for a kernel that died (himalia/extension/kernel_exits.py). */
export const KERNEL_EXIT_SCHEMA = 'https://events.himalia.dev/kernel_exit/v1';

/**
 * What to show for one event from the server's event bus, or null when it is not a kernel
 * death: the server's message, as an error when the memory limit was the cause.
 */
export function kernelExitNotice(
  emission: Event.Emission
): { message: string; outOfMemory: boolean } | null {
  if (emission.schema_id !== KERNEL_EXIT_SCHEMA) {
    return null;
  }
  const message = emission['message'];
  if (typeof message !== 'string' || !message) {
    return null;
  }
  return { message, outOfMemory: emission['reason'] === 'out-of-memory' };
}

/**
 * Tells the person why a kernel died (most often: past the memory limit of their profile)
 * instead of JupyterLab's bare "the kernel appears to have died".
 */
const kernelExitsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'himalia:kernel-exits',
  description: 'Explains kernel deaths, such as going past the memory limit.',
  autoStart: true,
  activate: (app: JupyterFrontEnd): void => {
    app.serviceManager.events.stream.connect((_, emission) => {
      const notice = kernelExitNotice(emission);
      if (notice === null) {
        return;
      }
      if (notice.outOfMemory) {
        Notification.error(notice.message, { autoClose: false });
      } else {
        Notification.warning(notice.message, { autoClose: 10000 });
      }
    });
  }
};

export default kernelExitsPlugin;
