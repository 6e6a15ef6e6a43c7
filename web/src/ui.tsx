import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useId, useRef, useState } from 'preact/hooks';
import type { UrlPager } from './router';

export const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** A result (status) or an error (alert), shown where the action was started. */
export function Outcome({ result, error }: { result?: ComponentChildren; error?: string | null }) {
  return (
    <>
      {error ? (
        <p role="alert" class="error">
          {error}
        </p>
      ) : null}
      {result ? (
        <p role="status" class="success">
          {result}
        </p>
      ) : null}
    </>
  );
}

/** Loads on mount and whenever `deps` change; `reload` refetches. Errors are kept, never thrown into the tree. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]) {
  const [state, setState] = useState<{ data: T | null; error: string | null; loading: boolean }>({ data: null, error: null, loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => live && setState({ data, error: null, loading: false }),
      (e: unknown) => live && setState({ data: null, error: messageOf(e), loading: false }),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

/** The elements Tab can reach inside a container, in document order. */
function tabbable(root: HTMLElement): HTMLElement[] {
  const selector = 'button, [href], input, select, textarea, [tabindex]:not([tabindex="-1"])';
  return [...root.querySelectorAll<HTMLElement>(selector)].filter((el) => !(el as HTMLButtonElement).disabled && el.getClientRects().length > 0);
}

/**
 * A modal confirmation (native <dialog>). The keyboard path is explicit, not left to the browser's
 * dialog focusing steps (which changed between Chromium releases): on open the focus goes to the
 * first field of the question if there is one, else to Cancel (the least destructive choice);
 * Tab and Shift+Tab cycle inside the dialog; Escape cancels; focus returns to the opener.
 */
export function ConfirmDialog(props: {
  open: boolean;
  title: string;
  confirmLabel: string;
  busy: boolean;
  danger?: boolean;
  onConfirm: () => void;
  onCancel: () => void;
  children?: ComponentChildren;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const cancelRef = useRef<HTMLButtonElement>(null);
  const questionRef = useRef<HTMLDivElement>(null);
  /** Closes this component made itself: their close events (queued, they arrive later) are not a cancel. */
  const ownCloses = useRef(0);
  const titleId = useId();
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (props.open && !d.open) {
      d.showModal();
      const field = questionRef.current ? tabbable(questionRef.current)[0] : undefined;
      (field ?? cancelRef.current)?.focus();
    }
    if (!props.open && d.open) {
      ownCloses.current += 1;
      d.close();
    }
  }, [props.open]);
  return (
    <dialog
      ref={ref}
      aria-labelledby={titleId}
      // Escape: cancel through the state at once (the close event comes later, asynchronously).
      onCancel={(e) => {
        e.preventDefault();
        if (!props.busy) props.onCancel();
      }}
      // The close event of our own close() arrives later, possibly after the user opened the dialog
      // again (it would cancel the new one): only a close the browser made by itself is a cancel.
      onClose={() => {
        if (ownCloses.current > 0) ownCloses.current -= 1;
        else if (!ref.current?.open) props.onCancel();
      }}
      // Focus trap: Tab past the last element comes back to the first, Shift+Tab the other way.
      onKeyDown={(e) => {
        if (e.key !== 'Tab' || !ref.current) return;
        const items = tabbable(ref.current);
        if (items.length === 0) return;
        const first = items[0]!;
        const last = items[items.length - 1]!;
        const active = document.activeElement;
        if (e.shiftKey && (active === first || !ref.current.contains(active))) {
          e.preventDefault();
          last.focus();
        } else if (!e.shiftKey && (active === last || !ref.current.contains(active))) {
          e.preventDefault();
          first.focus();
        }
      }}
    >
      <article>
        <h2 id={titleId}>{props.title}</h2>
        <div ref={questionRef}>{props.children}</div>
        <footer>
          <button type="button" class="secondary" ref={cancelRef} onClick={props.onCancel} disabled={props.busy}>
            Cancel
          </button>{' '}
          <button type="button" class={props.danger ? 'danger' : undefined} onClick={props.onConfirm} aria-busy={props.busy} disabled={props.busy}>
            {props.confirmLabel}
          </button>
        </footer>
      </article>
    </dialog>
  );
}

function useAction(run: () => Promise<ComponentChildren>, onOutcome?: (outcome: { result: ComponentChildren; error: string | null }) => void) {
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<ComponentChildren>(null);
  const [error, setError] = useState<string | null>(null);
  const ask = () => {
    setResult(null);
    setError(null);
    setConfirming(true);
  };
  const confirm = async () => {
    setBusy(true);
    try {
      const outcome = await run();
      setResult(outcome);
      onOutcome?.({ result: outcome, error: null });
    } catch (e) {
      setError(messageOf(e));
      onOutcome?.({ result: null, error: messageOf(e) });
    } finally {
      setBusy(false);
      setConfirming(false);
    }
  };
  return { confirming, busy, result, error, ask, confirm, cancel: () => setConfirming(false) };
}

export type ActionOutcome = { result: ComponentChildren; error: string | null };

/** A form whose submit asks for confirmation, then runs the action and shows its outcome under the form (or hands it to `onOutcome`). */
export function ActionForm(props: {
  label: string;
  question: () => ComponentChildren;
  run: () => Promise<ComponentChildren>;
  danger?: boolean;
  children?: ComponentChildren;
  /** Where the outcome goes when several actions share one outcome line (the latest replaces the one before). */
  onOutcome?: (outcome: ActionOutcome) => void;
}) {
  const a = useAction(props.run, props.onOutcome);
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        a.ask();
      }}
    >
      {props.children}
      <button type="submit" class={props.danger ? 'danger' : undefined}>
        {props.label}
      </button>
      {props.onOutcome ? null : <Outcome result={a.result} error={a.error} />}
      <ConfirmDialog open={a.confirming} title={`${props.label}?`} confirmLabel={`Yes, ${props.label.toLowerCase()}`} busy={a.busy} danger={props.danger} onConfirm={a.confirm} onCancel={a.cancel}>
        {a.confirming ? props.question() : null}
      </ConfirmDialog>
    </form>
  );
}

/** A button that asks for confirmation (with optional fields in the dialog) and shows the outcome beside it. */
export function ConfirmAction(props: {
  label: string;
  /** Accessible name when the visible label is ambiguous in a table (e.g. "Revoke certificate 12"). */
  ariaLabel?: string;
  question: ComponentChildren;
  run: () => Promise<ComponentChildren>;
  danger?: boolean;
  secondary?: boolean;
  disabled?: boolean;
  /**
   * Where the outcome is shown when the action can remove this button from the page (a table row
   * that the refreshed list no longer has): the view shows it outside the row. Default: beside the button.
   */
  onOutcome?: (outcome: { result: ComponentChildren; error: string | null }) => void;
}) {
  const a = useAction(props.run, props.onOutcome);
  return (
    <span class="action">
      <button type="button" class={props.danger ? 'danger' : props.secondary ? 'secondary' : undefined} aria-label={props.ariaLabel} onClick={a.ask} disabled={props.disabled}>
        {props.label}
      </button>
      {props.onOutcome ? null : <Outcome result={a.result} error={a.error} />}
      <ConfirmDialog open={a.confirming} title={`${props.ariaLabel ?? props.label}?`} confirmLabel={`Yes, ${props.label.toLowerCase()}`} busy={a.busy} danger={props.danger} onConfirm={a.confirm} onCancel={a.cancel}>
        {props.question}
      </ConfirmDialog>
    </span>
  );
}

/** First, Previous, the page number, Next: a list's keyset pages (their cursors are in the URL, see urlPager). */
export function Pager(props: { pager: UrlPager; nextCursor: string | null | undefined; label: string }) {
  const { pager, nextCursor } = props;
  return (
    <nav aria-label={`${props.label} pages`} class="pager">
      <button type="button" class="secondary" disabled={pager.page === 1} onClick={pager.first}>
        First
      </button>
      <button type="button" class="secondary" disabled={pager.page === 1} onClick={pager.previous}>
        Previous
      </button>
      <span>Page {pager.page}</span>
      <button type="button" class="secondary" disabled={!nextCursor} onClick={() => nextCursor && pager.next(nextCursor)}>
        Next
      </button>
    </nav>
  );
}

/** Something shown once (a private key, a webhook secret): download or copy it now; it is never stored by the browser. */
export function ShowOnce(props: { title: string; warning: string; value: string; filename: string; onDismiss: () => void }) {
  const headingId = useId();
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), []);
  const download = () => {
    const url = URL.createObjectURL(new Blob([props.value], { type: 'application/x-pem-file' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = props.filename;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 0);
  };
  return (
    <article class="show-once" aria-labelledby={headingId}>
      <h3 id={headingId} ref={heading} tabIndex={-1}>
        {props.title}
      </h3>
      <p role="alert" class="warning">
        {props.warning}
      </p>
      <label>
        {props.title}
        <textarea readOnly rows={6} value={props.value} autocomplete="off" spellcheck={false} />
      </label>
      <button type="button" onClick={download}>
        Download {props.filename}
      </button>{' '}
      <button type="button" class="secondary" onClick={props.onDismiss}>
        I have stored it: hide it
      </button>
    </article>
  );
}

export function Loading({ loading, error }: { loading: boolean; error: string | null }) {
  if (error)
    return (
      <p role="alert" class="error">
        {error}
      </p>
    );
  return loading ? <p aria-busy="true">Loading…</p> : null;
}

/** A search form of filters: fields, then "Apply filters" (the caller reads its own fields). */
export function FilterForm(props: { label: string; onApply: () => void; children: ComponentChildren }) {
  return (
    <form
      class="filters"
      role="search"
      aria-label={props.label}
      onSubmit={(e) => {
        e.preventDefault();
        props.onApply();
      }}
    >
      {props.children}
      <button type="submit" class="secondary">
        Apply filters
      </button>
    </form>
  );
}
