/**
 * How to Whale: each lesson's state in the file browser, and a "My progress" link.
 *
 * The file browser of Notebook 7's tree (and JupyterLab's) is JupyterLab's DirListing.
 * Its public way to change how an item looks is the renderer of the default file
 * browser (the IDefaultFileBrowserRenderer token): ours is DirListing's own renderer,
 * and after it has drawn an item that is a lesson notebook it adds a class and a small
 * badge: not started, in progress or done, with a tooltip saying whether the hub checked
 * it (verified) or the learner's own engine reported it (self-reported).
 *
 * What is a lesson, and where the learner stands, comes from the server's
 * `whale/api/progress?path=DIR` (whale_extension/progress.py), which asks the hub's
 * whale-progress service with the server's own token: this page holds no token.
 * It is asked when the browser opens a directory and each time it refreshes its
 * listing (every few seconds while the page is visible), so a check run in another tab
 * shows here soon after.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import {
  DirListing,
  IDefaultFileBrowser,
  IDefaultFileBrowserRenderer
} from '@jupyterlab/filebrowser';
import { IMainMenu } from '@jupyterlab/mainmenu';
import { Contents, ServerConnection } from '@jupyterlab/services';

const PROGRESS_COMMAND = 'whale:my-progress';
const ITEM_CLASS = 'jp-WhaleLesson';
const BADGE_CLASS = 'jp-WhaleLesson-badge';
const STATES = ['not-started', 'in-progress', 'done'] as const;
type State = (typeof STATES)[number];

interface IExercise {
  exercise: string;
  status: null | 'not-yet' | 'self-reported' | 'verified';
  summary: string;
}

interface ILesson {
  lesson: number;
  status: State;
  passed: number;
  verified: boolean;
  self_reported: boolean;
  exercises: IExercise[];
}

interface ILessonFile {
  path: string;
  name: string;
  lesson: number;
  title: string;
}

/** What the renderer draws from: the lesson notebooks known, and their lessons. */
class LessonProgress {
  files = new Map<string, ILessonFile>();
  lessons = new Map<number, ILesson>();

  /** The badge of `path`'s item, or null when it is no lesson (or not known yet). */
  badge(path: string): { state: State; text: string; title: string; kind: string } | null {
    const file = this.files.get(path);
    const lesson = file ? this.lessons.get(file.lesson) : undefined;
    if (!file || !lesson) {
      return null;
    }
    const name = `Lesson ${file.lesson}${file.title ? `: ${file.title}` : ''}`;
    const lines = lesson.exercises.map(e => {
      const how =
        e.status === 'verified'
          ? '✔ verified (checked by the hub on your engine)'
          : e.status === 'self-reported'
            ? '✔ self-reported (your own engine: the hub cannot check it)'
            : e.status === 'not-yet'
              ? '✘ not yet'
              : 'not checked yet';
      return `• ${e.summary || e.exercise}: ${how}`;
    });
    const total = lesson.exercises.length;
    if (lesson.status === 'done') {
      const kind = lesson.verified ? 'verified' : 'self-reported';
      return {
        state: 'done',
        kind,
        text: lesson.verified ? '✔ done' : '✔ done (self-reported)',
        title:
          `${name}: done, ${lesson.verified ? 'verified by the hub' : 'self-reported'}\n` +
          lines.join('\n')
      };
    }
    if (lesson.status === 'in-progress') {
      return {
        state: 'in-progress',
        kind: lesson.self_reported ? 'self-reported' : lesson.passed ? 'verified' : 'none',
        text: '◐ in progress',
        title: `${name}: in progress, ${lesson.passed} of ${total} exercises passed\n` + lines.join('\n')
      };
    }
    return {
      state: 'not-started',
      kind: 'none',
      text: 'not started',
      title: `${name}: not started (no check run yet)\n` + lines.join('\n')
    };
  }
}

const progress = new LessonProgress();

/** DirListing's own renderer, plus the lesson badge. */
class LessonRenderer extends DirListing.Renderer {
  /** The item nodes drawn, and the path each shows now (the listing reuses nodes). */
  private drawn = new Map<HTMLElement, string>();

  updateItemNode(
    node: HTMLElement,
    model: Contents.IModel,
    fileType?: DocumentRegistry.IFileType,
    ...rest: any[]
  ): void {
    (super.updateItemNode as any)(node, model, fileType, ...rest);
    this.drawn.set(node, model.path);
    decorate(node, model.path);
  }

  /** Draw the badges again, after new progress came. */
  redecorate(): void {
    for (const [node, path] of this.drawn) {
      if (node.isConnected) {
        decorate(node, path);
      } else {
        this.drawn.delete(node); // the listing dropped it
      }
    }
  }
}

const renderer = new LessonRenderer();

function decorate(node: HTMLElement, path: string): void {
  const badge = progress.badge(path);
  let span = node.querySelector(`.${BADGE_CLASS}`) as HTMLElement | null;
  node.classList.remove(ITEM_CLASS, ...STATES.map(s => `${ITEM_CLASS}-${s}`));
  if (!badge) {
    span?.remove();
    delete node.dataset.whaleLesson;
    delete node.dataset.whaleLessonStatus;
    return;
  }
  node.classList.add(ITEM_CLASS, `${ITEM_CLASS}-${badge.state}`);
  node.dataset.whaleLesson = String(progress.files.get(path)!.lesson);
  node.dataset.whaleLessonStatus = badge.state;
  if (!span) {
    span = document.createElement('span');
    // Beside the name, in the name column (the renderer redraws only the name's text).
    const text = node.querySelector('.jp-DirListing-itemText');
    (text?.parentElement ?? node).insertBefore(span, text?.nextSibling ?? null);
  }
  span.className = `${BADGE_CLASS} ${BADGE_CLASS}-${badge.state}`;
  span.dataset.kind = badge.kind;
  span.textContent = badge.text;
  span.title = badge.title;
}

/** The hub's page of the learner's progress (JupyterHub gives this page the hub's prefix). */
function myProgressUrl(): string {
  const hubPrefix = PageConfig.getOption('hubPrefix'); // "/base/hub/"
  const base = hubPrefix ? hubPrefix.replace(/hub\/?$/, '') : '/';
  return PageConfig.getOption('hubHost') + URLExt.join(base, 'services/whale-progress/');
}

const rendererPlugin: JupyterFrontEndPlugin<IDefaultFileBrowserRenderer> = {
  id: '@howtowhale/whale-indicator:lesson-renderer',
  description: "Draws each lesson notebook's state in the default file browser.",
  autoStart: true,
  provides: IDefaultFileBrowserRenderer,
  activate: () => renderer
};

const lessonsPlugin: JupyterFrontEndPlugin<void> = {
  id: '@howtowhale/whale-indicator:lessons',
  description: 'Asks where the learner stands on each lesson; links My progress.',
  autoStart: true,
  optional: [IDefaultFileBrowser, IMainMenu, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    browser: IDefaultFileBrowser | null,
    mainMenu: IMainMenu | null,
    palette: ICommandPalette | null
  ) => {
    app.commands.addCommand(PROGRESS_COMMAND, {
      label: 'My progress',
      caption: 'Your lessons and exercises, as the hub recorded them',
      execute: () => {
        window.open(myProgressUrl(), '_blank', 'noopener');
      }
    });
    mainMenu?.helpMenu.addGroup([{ command: PROGRESS_COMMAND }], -1);
    palette?.addItem({ command: PROGRESS_COMMAND, category: 'Docker' });
    if (!browser) {
      return;
    }
    let seen = '';
    let asking: Promise<void> | null = null;
    const ask = async (): Promise<void> => {
      const settings = ServerConnection.makeSettings();
      const url =
        URLExt.join(settings.baseUrl, 'whale/api/progress') +
        URLExt.objectToQueryString({ path: browser.model.path });
      try {
        const response = await ServerConnection.makeRequest(url, {}, settings);
        const body = await response.json();
        progress.files = new Map(
          (body.files ?? []).map((f: ILessonFile) => [f.path, f])
        );
        progress.lessons = new Map(
          (response.ok ? body.lessons ?? [] : []).map((l: ILesson) => [l.lesson, l])
        );
        const now = JSON.stringify([body.files, response.ok ? body.lessons : null]);
        if (now !== seen) {
          seen = now;
          renderer.redecorate();
        }
      } catch (error) {
        console.warn('whale: lesson progress is not available', error);
      }
    };
    /** One ask at a time: a directory change and its listing's refresh come together. */
    const askOnce = (): void => {
      if (!asking) {
        asking = ask().finally(() => {
          asking = null;
        });
      }
    };
    // The listing refreshes itself every few seconds while the page is visible (and
    // after every change the browser makes): progress made in another tab shows then.
    browser.model.pathChanged.connect(askOnce);
    browser.model.refreshed.connect(askOnce);
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) {
        askOnce();
      }
    });
    askOnce();
  }
};

// The renderer token is JupyterLab 4.6's (Notebook 7.6): before it, no badges.
export default IDefaultFileBrowserRenderer
  ? [rendererPlugin, lessonsPlugin]
  : [lessonsPlugin];
