import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useId, useRef, useState } from 'preact/hooks';

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

/** A modal confirmation (native <dialog>: focus is trapped, Escape cancels, focus returns to the opener). */
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
  const titleId = useId();
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (props.open && !d.open) d.showModal();
    if (!props.open && d.open) d.close();
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
      // A close event that arrives after the dialog was opened again is stale: ignore it.
      onClose={() => {
        if (!ref.current?.open) props.onCancel();
      }}
    >
      <article>
        <h2 id={titleId}>{props.title}</h2>
        {props.children}
        <footer>
          <button type="button" class="secondary" onClick={props.onCancel} disabled={props.busy}>
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

function useAction(run: () => Promise<ComponentChildren>) {
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
      setResult(await run());
    } catch (e) {
      setError(messageOf(e));
    } finally {
      setBusy(false);
      setConfirming(false);
    }
  };
  return { confirming, busy, result, error, ask, confirm, cancel: () => setConfirming(false) };
}

/** A form whose submit asks for confirmation, then runs the action and shows its outcome under the form. */
export function ActionForm(props: {
  label: string;
  question: () => ComponentChildren;
  run: () => Promise<ComponentChildren>;
  danger?: boolean;
  children?: ComponentChildren;
}) {
  const a = useAction(props.run);
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
      <Outcome result={a.result} error={a.error} />
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
}) {
  const a = useAction(props.run);
  return (
    <span class="action">
      <button type="button" class={props.danger ? 'danger' : props.secondary ? 'secondary' : undefined} aria-label={props.ariaLabel} onClick={a.ask} disabled={props.disabled}>
        {props.label}
      </button>
      <Outcome result={a.result} error={a.error} />
      <ConfirmDialog open={a.confirming} title={`${props.ariaLabel ?? props.label}?`} confirmLabel={`Yes, ${props.label.toLowerCase()}`} busy={a.busy} danger={props.danger} onConfirm={a.confirm} onCancel={a.cancel}>
        {props.question}
      </ConfirmDialog>
    </span>
  );
}

/** Keyset paging: a stack of the cursors that led to the current page. */
export function usePager(reset: unknown[]) {
  const [stack, setStack] = useState<string[]>([]);
  useEffect(() => setStack([]), reset);
  return {
    cursor: stack[stack.length - 1],
    page: stack.length + 1,
    next: (cursor: string) => setStack((s) => [...s, cursor]),
    previous: () => setStack((s) => s.slice(0, -1)),
    first: () => setStack([]),
  };
}

export function Pager(props: { pager: ReturnType<typeof usePager>; nextCursor: string | null | undefined; label: string }) {
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
