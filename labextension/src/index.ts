/**
 * How to Whale: the learner's Docker engine at a glance.
 *
 * A small whale item in the top bar (Notebook 7 has no status bar) and, where there is
 * one, in the status bar: ok / degraded / down, with the reason on hover. It polls
 * `whale/api/health`, which the server caches and does not count as activity.
 * Clicking it shows the details and links to the ports the learner's containers
 * publish (opened through the server's `whale/proxy/<port>/`). Commands: "Reload
 * Docker credentials" (the bundle dropped on disk for the server) and "Upload Docker
 * credentials…" (a bundle file from the learner's computer). Each lesson's state in
 * the file browser, and "My progress" in the Help menu: ./lessons.ts.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  Notification,
  showDialog
} from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

import lessonPlugins from './lessons';

const PLUGIN_ID = '@howtowhale/whale-indicator:plugin';
const RELOAD_COMMAND = 'whale:reload-credentials';
const CHECK_COMMAND = 'whale:check-engine';
const UPLOAD_COMMAND = 'whale:upload-credentials';
const DETAILS_COMMAND = 'whale:show-engine';
/** Milliseconds between polls while the page is visible. */
const POLL_MS = 5000;

type Status = 'ok' | 'degraded' | 'down' | 'unknown';

interface IHealth {
  status: Status;
  reason: string;
  [key: string]: any;
}

/** Fetch JSON from the extension's API (base URL and XSRF handled by Jupyter). */
async function whaleRequest(
  path: string,
  init: RequestInit = {}
): Promise<{ ok: boolean; status: number; body: any }> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'whale/api', path);
  const response = await ServerConnection.makeRequest(url, init, settings);
  let body: any = null;
  try {
    body = await response.json();
  } catch {
    body = { message: response.statusText };
  }
  return { ok: response.ok, status: response.status, body };
}

/** One indicator widget; every instance shares the same poller. */
class WhaleIndicator extends Widget {
  constructor() {
    super();
    this.addClass('jp-WhaleIndicator');
    this.id = `jp-whale-indicator-${WhaleIndicator.count++}`;
    this.node.setAttribute('role', 'status');
    this.node.innerHTML =
      '<span class="jp-WhaleIndicator-whale" aria-hidden="true">🐳</span>' +
      '<span class="jp-WhaleIndicator-dot"></span>' +
      '<span class="jp-WhaleIndicator-label">Docker</span>';
    this.show_({ status: 'unknown', reason: 'Checking your Docker engine…' });
  }

  show_(health: IHealth): void {
    const label = this.node.querySelector('.jp-WhaleIndicator-label');
    this.node.dataset.status = health.status;
    this.node.title = `Docker engine: ${health.status}\n${health.reason}`;
    if (label) {
      label.textContent =
        health.status === 'unknown' ? 'Docker' : `Docker: ${health.status}`;
    }
  }

  static count = 0;
}

class HealthPoller {
  readonly widgets: WhaleIndicator[] = [];
  private timer: number | undefined;

  start(): void {
    void this.check();
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) {
        void this.check();
      }
    });
  }

  async check(refresh = false): Promise<IHealth> {
    window.clearTimeout(this.timer);
    let health: IHealth;
    try {
      const { ok, body } = await whaleRequest(
        refresh ? 'health?refresh=1' : 'health'
      );
      health = ok
        ? body
        : {
            status: 'unknown',
            reason: `The server could not check the engine (${body?.message ?? 'error'}).`
          };
    } catch (error) {
      health = {
        status: 'unknown',
        reason: `The notebook server did not answer (${error}).`
      };
    }
    for (const widget of this.widgets) {
      widget.show_(health);
    }
    // Poll only while someone looks: a hidden tab costs nothing.
    this.timer = window.setTimeout(() => {
      if (!document.hidden) {
        void this.check();
      }
    }, POLL_MS);
    return health;
  }
}

/** A text element. */
function el(tag: string, text = '', className = ''): HTMLElement {
  const node = document.createElement(tag);
  node.textContent = text;
  if (className) {
    node.className = className;
  }
  return node;
}

/** The body of the details dialog: health facts, then the published ports. */
async function detailsBody(health: IHealth): Promise<Widget> {
  const body = el('div', '', 'jp-WhaleDetails');
  body.appendChild(el('p', health.reason, 'jp-WhaleDetails-reason'));
  const facts = el('ul');
  const engine = health.engine ?? {};
  const creds = health.credentials;
  if (creds) {
    facts.appendChild(el('li', `Engine: ${creds.docker_host}`));
  }
  if (engine.reachable) {
    facts.appendChild(
      el('li', `Docker ${engine.version} (API ${engine.api_version}), ${engine.latency_ms} ms`)
    );
  }
  const swarm = health.swarm;
  if (swarm) {
    const nodes = (swarm.nodes ?? [])
      .map((n: any) => `${n.hostname} (${n.role}, ${n.status})`)
      .join(', ');
    facts.appendChild(
      el(
        'li',
        `Swarm: ${swarm.state}${swarm.role ? `, ${swarm.role}` : ''}` +
          (swarm.total ? `, ${swarm.ready} of ${swarm.total} nodes ready` : '') +
          (nodes ? `: ${nodes}` : '')
      )
    );
  }
  if (creds) {
    facts.appendChild(el('li', `Certificate expires in ${creds.days_left} days`));
  }
  body.appendChild(facts);

  body.appendChild(el('h4', 'Published ports'));
  const ports = el('ul', '', 'jp-WhaleDetails-ports');
  try {
    const { ok, body: listing } = await whaleRequest('ports');
    if (!ok) {
      ports.appendChild(el('li', listing?.message ?? 'The engine could not be asked.'));
    } else if (listing.message) {
      ports.appendChild(el('li', listing.message));
    }
    if (ok && !listing.ports.length) {
      ports.appendChild(el('li', 'None yet: docker run -p 8080:80 … publishes one.'));
    }
    for (const port of ok ? listing.ports : []) {
      const who = port.published_by.map((p: any) => p.name).join(', ');
      const item = el('li');
      if (port.url) {
        const link = el('a', `Port ${port.port}`) as HTMLAnchorElement;
        link.href = port.url;
        link.target = '_blank';
        link.rel = 'noopener';
        link.className = 'jp-WhaleDetails-portLink';
        link.dataset.port = String(port.port);
        item.appendChild(link);
        item.appendChild(document.createTextNode(` → ${who} (container port ${port.target})`));
      } else {
        item.textContent = port.reachable
          ? `Port ${port.port} (${who})`
          : `Port ${port.port} (${who}) is published on the engine's loopback only`;
      }
      ports.appendChild(item);
    }
  } catch (error) {
    ports.appendChild(el('li', `The ports could not be listed (${error}).`));
  }
  body.appendChild(ports);
  return new Widget({ node: body });
}

/** Ask for a bundle file and upload it. */
function pickFile(): Promise<File | null> {
  return new Promise(resolve => {
    const input = document.createElement('input');
    input.type = 'file';
    input.accept = '.zip,.tar,.tgz,.gz,.dockercontext,application/zip,application/x-tar';
    input.addEventListener('change', () => resolve(input.files?.[0] ?? null));
    input.click();
  });
}

async function reportInstall(ok: boolean, body: any): Promise<void> {
  if (ok) {
    Notification.success(body.message, { autoClose: 5000 });
  } else {
    Notification.error(
      `Credentials not installed: ${body?.message ?? 'unknown error'} ` +
        'The previous credentials are still in use.',
      { autoClose: false }
    );
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Docker engine status and credential reload for How to Whale.',
  autoStart: true,
  optional: [IStatusBar, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null
  ) => {
    const poller = new HealthPoller();

    const top = new WhaleIndicator();
    top.addClass('jp-WhaleIndicator-top');
    poller.widgets.push(top);
    app.shell.add(top, 'top', { rank: 990 });

    if (statusBar) {
      const item = new WhaleIndicator();
      item.addClass('jp-WhaleIndicator-statusbar');
      poller.widgets.push(item);
      statusBar.registerStatusItem('@howtowhale/whale-indicator:status', {
        item,
        align: 'left',
        rank: 50
      });
    }

    app.commands.addCommand(CHECK_COMMAND, {
      label: 'Check Docker engine',
      execute: () => poller.check(true)
    });
    app.commands.addCommand(RELOAD_COMMAND, {
      label: 'Reload Docker credentials',
      caption: 'Install the credentials bundle the server finds on disk',
      execute: async () => {
        const { ok, body } = await whaleRequest('credentials/reload', {
          method: 'POST'
        });
        await reportInstall(ok, body);
        await poller.check(true);
        return body;
      }
    });
    app.commands.addCommand(UPLOAD_COMMAND, {
      label: 'Upload Docker credentials…',
      caption: 'Install a credentials bundle (Carina zip or docker context export)',
      execute: async (args: any) => {
        const file: Blob | null = args?.file ?? (await pickFile());
        if (!file) {
          return null;
        }
        const { ok, body } = await whaleRequest('credentials', {
          method: 'POST',
          body: file,
          headers: { 'Content-Type': 'application/octet-stream' }
        });
        await reportInstall(ok, body);
        await poller.check(true);
        return body;
      }
    });
    app.commands.addCommand(DETAILS_COMMAND, {
      label: 'Show Docker engine status',
      execute: async () => {
        const health = await poller.check(true);
        const result = await showDialog({
          title: `Docker engine: ${health.status}`,
          body: await detailsBody(health),
          buttons: [
            Dialog.createButton({ label: 'Upload credentials…', actions: ['upload'] }),
            Dialog.createButton({ label: 'Reload credentials', actions: ['reload'] }),
            Dialog.okButton({ label: 'Close' })
          ]
        });
        const actions = result.button.actions;
        if (actions.includes('upload')) {
          await app.commands.execute(UPLOAD_COMMAND);
        } else if (actions.includes('reload')) {
          await app.commands.execute(RELOAD_COMMAND);
        }
      }
    });
    for (const widget of poller.widgets) {
      widget.node.addEventListener('click', () => {
        void app.commands.execute(DETAILS_COMMAND);
      });
    }
    if (palette) {
      for (const command of [RELOAD_COMMAND, UPLOAD_COMMAND, DETAILS_COMMAND, CHECK_COMMAND]) {
        palette.addItem({ command, category: 'Docker' });
      }
    }
    poller.start();
  }
};

export default [plugin, ...lessonPlugins];
