import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/**
 * The caller as the platform API knows it.
 */
export interface IWhoAmI {
  name: string;
  roles: string[];
  scopes: string[];
}

/**
 * The state of one part of the platform (hub, proxy, database, a service).
 */
export interface IServiceHealth {
  ok: boolean;
  /** Internal URLs and errors: only administrators get them. */
  detail?: string;
}

/**
 * The platform's health: `ok` is true only when every part is.
 */
export interface IHealth {
  ok: boolean;
  services: { [name: string]: IServiceHealth };
}

/**
 * The reply of `GET <base>/himalia/api/status`.
 */
export interface IStatus {
  whoami: IWhoAmI;
  health: IHealth;
}

/**
 * A failed call to the himalia server extension, with a message meant for the user.
 */
export class HimaliaRequestError extends Error {
  /**
   * @param message - what went wrong, as the server or the network said it.
   * @param status - the HTTP status, or 0 when no answer came back.
   */
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
    this.name = 'HimaliaRequestError';
  }
}

/**
 * Typed client of the himalia server extension's REST API.
 */
export class HimaliaClient {
  /**
   * @param serverSettings - connection settings; the page's own server by default.
   */
  constructor(serverSettings?: ServerConnection.ISettings) {
    this.serverSettings = serverSettings ?? ServerConnection.makeSettings();
  }

  /**
   * Settings used to reach the Jupyter server.
   */
  readonly serverSettings: ServerConnection.ISettings;

  /**
   * Who the user is and how healthy the platform is.
   *
   * @throws {HimaliaRequestError} when the server cannot be reached or answers an error.
   */
  status(): Promise<IStatus> {
    return this.request<IStatus>('status');
  }

  private async request<T>(
    endpoint: string,
    init: RequestInit = {}
  ): Promise<T> {
    const url = URLExt.join(
      this.serverSettings.baseUrl,
      'himalia',
      'api',
      endpoint
    );
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(
        url,
        init,
        this.serverSettings
      );
    } catch (error) {
      throw new HimaliaRequestError(
        `Cannot reach the Jupyter server: ${(error as Error).message}`,
        0
      );
    }
    const body = parseJSON(await response.text());
    if (!response.ok) {
      const message = hasMessage(body)
        ? body.message
        : `${response.status} ${response.statusText}`;
      throw new HimaliaRequestError(message, response.status);
    }
    if (body === null) {
      throw new HimaliaRequestError(
        'The server sent an empty or invalid reply.',
        response.status
      );
    }
    return body as T;
  }
}

function parseJSON(text: string): unknown {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

function hasMessage(body: unknown): body is { message: string } {
  return (
    typeof body === 'object' &&
    body !== null &&
    typeof (body as { message?: unknown }).message === 'string' &&
    (body as { message: string }).message !== ''
  );
}
